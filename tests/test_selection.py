"""Selection team: LESS as configured in conf/teams/default.yaml, on the CPU default fine-tune model."""
import copy
import random
import string

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import autodp.ops.selection  # noqa: F401 - registers less_select
from autodp.data.noise import inject_noise
from autodp.data.specs import data_specs, pinned
from autodp.ops.base import build_op, run_op
from autodp.ops.selection import LessSelect, RademacherProjector, _scorer
from autodp.ops.base import TeamNotAvailable
from conftest import ROOT

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cfg():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[])


@pytest.fixture(scope="module")
def context(cfg, tmp_path_factory):
    """What the evaluator hands the operator: fine-tune config, target examples, raw pool."""
    specs = data_specs(cfg, tmp_path_factory.mktemp("splits"))
    return {"finetune": OmegaConf.to_container(cfg.finetune, resolve=True), "val": specs.target, "pool": specs.pool}


@pytest.fixture(scope="module")
def entry(cfg):
    (e,) = OmegaConf.to_container(cfg.teams, resolve=True)["selection"]
    return e


def with_params(entry, **overrides):
    (name, params), = entry.items()
    return {name: {**params, **overrides}}


def corrupt(rows, n_html, n_garbage, seed=0):
    """Rows with ``n_html`` answers wrapped in markup and ``n_garbage`` answers replaced by ASCII
    garbage of the same length; returns them and the ids of the corrupted rows."""
    out = inject_noise(rows, n_html / len(rows), seed=seed, kinds=("html",))
    bad = {a["id"] for a, b in zip(rows, out) if a != b}
    rng = random.Random(seed)
    for i in rng.sample([i for i, r in enumerate(out) if r["id"] not in bad], n_garbage):
        out[i] = {**out[i], "output": "".join(rng.choice(string.printable[:94]) for _ in out[i]["output"])}
        bad.add(out[i]["id"])
    return out, bad


def test_config_takes_model_targets_and_pool_from_the_evaluation(cfg, entry, context):
    assert not {"finetune", "val", "pool"} & set(entry["less_select"])
    op = build_op(entry, context)
    assert isinstance(op, LessSelect) and op.keep_fraction == 0.5
    assert op.finetune == context["finetune"] and op.pool == context["pool"]
    # The target examples are validation rows that R(f) never scores on.
    assert op.val == pinned({"path": cfg.dataset.val, "offset": 0, "limit": cfg.eval.target_rows})
    with pytest.raises(TypeError):
        build_op(entry)


def test_projection_is_the_same_for_any_block_and_keeps_lengths():
    x = torch.randn(6, 5000)
    project = RademacherProjector(dim=2048, seed=3, chunk_entries=2**16)  # many chunks
    full = project(x)
    assert torch.allclose(full[2:5], project(x[2:5]), atol=1e-5)
    ratio = full.norm(dim=1) / x.norm(dim=1)
    assert ((ratio - 1).abs() < 0.1).all(), ratio  # Johnson-Lindenstrauss: lengths kept
    assert not torch.allclose(full, RademacherProjector(dim=2048, seed=4)(x))


def test_all_or_nothing_needs_no_model(cmd_rows):
    rows = cmd_rows[:7]
    assert LessSelect(finetune={}, val={"path": "unused"}, pool={}, keep_fraction=1.0)(rows) == rows
    assert LessSelect(finetune={}, val={"path": "unused"}, pool={}, keep_fraction=0.0)(rows) == []
    with pytest.raises(TeamNotAvailable, match="target examples"):
        LessSelect(finetune={}, val={"path": None}, pool={})


@pytest.mark.slow
def test_keeps_rows_like_the_validation_set_over_corrupted_rows(entry, context, cmd_rows):
    rows, bad = corrupt(cmd_rows[:160], n_html=20, n_garbage=20)
    before = copy.deepcopy(rows)
    out, rep = run_op(build_op(entry, context), rows)
    assert rows == before
    assert rep.rows_out == len(out) == round(0.5 * len(rows)) and rep.rows_changed == 0
    ids = [r["id"] for r in rows]
    kept = [ids.index(r["id"]) for r in out]
    assert kept == sorted(kept) and all(r == rows[i] for r, i in zip(out, kept))  # input order, rows as given
    kept_bad = sum(r["id"] in bad for r in out) / len(out)
    assert kept_bad < 0.5 * len(bad) / len(rows), (kept_bad, len(bad) / len(rows))


@pytest.mark.slow
def test_deterministic_for_a_seed(entry, context, cmd_rows):
    rows = cmd_rows[200:240]
    small = dict(warmup_epochs=1, min_warmup_rows=16, n_val=8)
    op = build_op(with_params(entry, **small), context)
    state = torch.get_rng_state()
    first = op.scores(rows)
    assert torch.equal(first, op.scores(rows))
    assert torch.equal(state, torch.get_rng_state())  # the caller's random state is left alone
    assert op(rows) == op(rows)
    assert not torch.equal(first, build_op(with_params(entry, **small, seed=1), context).scores(rows))


@pytest.mark.slow
def test_a_row_is_scored_once_whatever_rows_come_with_it(entry, context, cmd_rows, caplog):
    """The warm-up is on the raw pool, so a row's score depends on the row alone: a later strategy
    scores only the rows no earlier one did."""
    small = dict(warmup_epochs=1, min_warmup_rows=16, n_val=8, seed=7)
    op = build_op(with_params(entry, **small), context)
    first = op.scores(cmd_rows[300:340])
    with caplog.at_level("INFO", logger="autodp.ops.selection"):
        mixed = op.scores(cmd_rows[320:350])
    assert "30 rows, 10 scored now" in caplog.text
    assert torch.equal(mixed[:20], first[20:])


@pytest.mark.slow
def test_scores_do_not_depend_on_whether_the_base_was_cached(entry, context, cmd_rows, tmp_path, monkeypatch):
    """The first use of a setting pre-warms its base; LESS must score as it does once cached."""
    monkeypatch.setenv("AUTODP_CACHE", str(tmp_path))  # an empty cache: the base is built here
    small = dict(warmup_epochs=1, min_warmup_rows=16, n_val=8)
    ctx = {**context, "pool": {**context["pool"], "limit": 120}}  # a small pool: a quick pre-warm
    rows = cmd_rows[400:430]
    cold = build_op(with_params(entry, **small), ctx).scores(rows)
    _scorer.cache_clear()  # a new process: the base now comes from the cache
    assert torch.equal(cold, build_op(with_params(entry, **small), ctx).scores(rows))


@pytest.mark.slow
def test_less_on_ray_actors_keeps_the_rows_it_keeps_here(entry, context, cmd_rows):
    """process=ray: the warm-up here, the rows scored in slices on two Ray actors (each with a
    pickled copy of the warmed-up model): the same scores, the same rows kept."""
    import ray

    from autodp.process.ray_engine import RayEngine
    from conftest import RAY_ADDRESS

    rows = corrupt(cmd_rows[400:440], n_html=5, n_garbage=5, seed=3)[0]
    op = build_op(with_params(entry, warmup_epochs=1, min_warmup_rows=16, n_val=8, seed=5), context)
    here, scores_here = run_op(op, rows), op.scores(rows)
    engine = RayEngine(address=RAY_ADDRESS, num_cpus=2, progress=False, scores={"actors": 2, "cpus": 1, "gpus": 0})
    try:
        assert torch.allclose(engine.pooled_scores(op, rows), scores_here, rtol=1e-5, atol=1e-7)
        got = engine.run(op, rows)
    finally:
        ray.shutdown()
    assert got[0] == here[0] and len(got[0]) == 20
    assert (got[1].rows_in, got[1].rows_out) == (here[1].rows_in, here[1].rows_out)
