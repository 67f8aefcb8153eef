"""Cache-and-reuse (paper 3.3.4) on real files: a strategy reuses its longest processed prefix
and runs only the rest, every prefix is stored, concurrent writers leave one valid entry, a
corrupt entry is rebuilt, keys follow content, and an evaluation is never fine-tuned twice."""
from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from autodp.accel.crm import Crm, main, prefix_keys, score_key
from autodp.accel.screening import ScreeningModel
from autodp.data.io import Row, fingerprint, write_rows
from autodp.data.noise import inject_noise
from autodp.data.specs import data_specs
from autodp.evaluate.evaluator import evaluate
from autodp.evaluate.request import EvalRequest
from autodp.ops.base import Operator, OpReport, register
from autodp.ops.teams import apply_strategy, build_team
from autodp.strategy import Strategy, Team
from conftest import ROOT

torch.set_num_threads(1)
CALLS: list[str] = []  # the probes that ran, in order (operators are rebuilt for every strategy)


class Probe(Operator):
    """Marks every answer with its tag, so a wrong reuse shows in the rows, and records its run."""

    def __init__(self, tag: str):
        self.tag = tag

    def __call__(self, rows: list[Row]) -> list[Row]:
        CALLS.append(self.name)
        return [{**r, "output": r["output"] + self.tag} for r in rows]


@register("probe_cleaning")
class CleaningProbe(Probe):
    team = Team.CLEANING


@register("probe_optimization")
class OptimizationProbe(Probe):
    team = Team.OPTIMIZATION


@register("probe_selection")
class SelectionProbe(Probe):
    team = Team.SELECTION

    def __call__(self, rows: list[Row]) -> list[Row]:
        return super().__call__(rows)[::2]


CLEANING = ["clean_html", "minhash_dedup", "special_char_filter", "probe_cleaning"]
TEAMS = {"cleaning": [{"clean_html": {}}, {"minhash_dedup": {"num_perm": 64}},
                      {"special_char_filter": {"max_ratio": 0.25}}, {"probe_cleaning": {"tag": "[c]"}}],
         "optimization": [{"probe_optimization": {"tag": "[o]"}}],
         "generation": [],
         "selection": [{"probe_selection": {"tag": "[s]"}}]}


def keys_of(strategy: str, rows: list[Row], teams: dict = TEAMS, screener=None) -> list[str]:
    s = Strategy.parse(strategy)
    return prefix_keys(rows, [(t, build_team(t, teams)) for t in s.teams], screener)


def counts(reports: list[OpReport]) -> list[tuple]:
    """What a report says about the data (not its time, not whether it was cached)."""
    return [(r.op, r.rows_in, r.rows_out, r.rows_changed, r.stats) for r in reports]


@pytest.fixture(scope="module")
def rows(cmd_rows):
    """200 shipped rows, a fifth wrapped in HTML: Cleaning changes and removes some."""
    return inject_noise(cmd_rows[:200], 0.2, seed=3, kinds=("html",))


@pytest.fixture
def crm(tmp_path):
    CALLS.clear()
    return Crm(tmp_path / "crm")


def test_a_strategy_extending_a_cached_prefix_runs_only_its_suffix(rows, crm, caplog):
    apply_strategy(Strategy.parse("cleaning"), rows, TEAMS, cache=crm)
    assert CALLS == ["probe_cleaning"]
    CALLS.clear()
    with caplog.at_level(logging.INFO, logger="autodp.ops.teams"):
        out, reports = apply_strategy(Strategy.parse("cleaning>selection"), rows, TEAMS, cache=crm)
    assert CALLS == ["probe_selection"]
    assert [(r.op, r.cached) for r in reports] == [(op, True) for op in CLEANING] + [("probe_selection", False)]
    assert "reusing the processed prefix cleaning (" in caplog.text
    CALLS.clear()
    plain, plain_reports = apply_strategy(Strategy.parse("cleaning>selection"), rows, TEAMS)
    assert CALLS == ["probe_cleaning", "probe_selection"]
    assert out == plain and counts(reports) == counts(plain_reports)
    assert 0 < len(out) < len(rows) / 2 and all(r["output"].endswith("[c][s]") for r in out)


def test_every_prefix_is_stored_and_a_repeated_strategy_runs_no_operator(rows, crm):
    first, _ = apply_strategy(Strategy.parse("cleaning>optimization>selection"), rows, TEAMS, cache=crm)
    assert CALLS == ["probe_cleaning", "probe_optimization", "probe_selection"]
    keys = keys_of("cleaning>optimization>selection", rows)
    assert crm.info()["datasets"] == 3 and all(crm.load(k) is not None for k in keys)
    CALLS.clear()
    again, reports = apply_strategy(Strategy.parse("cleaning>optimization>selection"), rows, TEAMS, cache=crm)
    assert CALLS == [] and again == first and all(r.cached for r in reports)
    shorter, reports = apply_strategy(Strategy.parse("cleaning>optimization"), rows, TEAMS, cache=crm)
    assert CALLS == [] and len(reports) == len(CLEANING) + 1
    assert crm.load(keys[1])[0] == shorter and all(r["output"].endswith("[c][o]") for r in shorter)


def _store(root: str, key: str, rows: list[Row], reports: list[OpReport], barrier, results) -> None:
    barrier.wait()  # both writers start together
    results.put(Crm(root).store(key, rows, reports, "cleaning"))


def test_concurrent_writers_of_one_key_leave_one_valid_entry(cmd_rows, tmp_path):
    key = hashlib.sha256(b"one prefix").hexdigest()
    reports = [OpReport("clean_html", "cleaning", 2000, 2000, 12, 0.5, {"tags": 3})]
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_store, args=(str(tmp_path), key, cmd_rows, reports, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    stored = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert stored == [False, True]  # the first writer wins, the other's entry is discarded
    assert os.listdir(tmp_path / "datasets" / key[:2]) == [key]  # no temp folder left behind
    back, back_reports = Crm(tmp_path).load(key)
    assert back == cmd_rows
    assert back_reports == [replace(reports[0], cached=True)]


@pytest.mark.parametrize("damage", ["change an id in rows.jsonl", "garble meta.json", "delete rows.jsonl"])
def test_a_corrupt_entry_is_detected_and_rebuilt(rows, crm, caplog, damage):
    out, _ = apply_strategy(Strategy.parse("cleaning"), rows, TEAMS, cache=crm)
    key, = keys_of("cleaning", rows)
    entry = crm.datasets / key[:2] / key
    if damage.startswith("change"):  # still valid JSON rows: only the checksum can tell
        data = bytearray((entry / "rows.jsonl").read_bytes())
        data[data.index(b'"cmd_') + 5] ^= 0x01  # a digit of the first id
        (entry / "rows.jsonl").write_bytes(bytes(data))
    elif damage.startswith("garble"):
        (entry / "meta.json").write_text('{"rows": ', encoding="utf-8")
    else:
        (entry / "rows.jsonl").unlink()
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="autodp.accel.crm"):
        again, reports = apply_strategy(Strategy.parse("cleaning"), rows, TEAMS, cache=crm)
    assert "corrupt cache entry" in caplog.text
    assert CALLS == ["probe_cleaning"] and not any(r.cached for r in reports) and again == out
    assert crm.load(key)[0] == out  # the rebuilt entry is valid
    assert os.listdir(entry.parent) == [key]  # the damaged one is gone


def test_keys_follow_every_parameter_and_the_full_input(rows):
    key, = keys_of("cleaning", rows)
    assert keys_of("cleaning", rows) == [key]  # fresh operators, same key
    assert keys_of("cleaning>selection", rows)[0] == key  # a prefix's key ignores what follows
    for i, params in [(1, {"num_perm": 128}), (2, {"max_ratio": 0.3}), (3, {"tag": "[C]"})]:
        cleaning = [*TEAMS["cleaning"][:i], {CLEANING[i]: params}, *TEAMS["cleaning"][i + 1:]]
        assert keys_of("cleaning", rows, {**TEAMS, "cleaning": cleaning}) != [key], params
    swapped = [TEAMS["cleaning"][1], TEAMS["cleaning"][0], *TEAMS["cleaning"][2:]]
    assert keys_of("cleaning", rows, {**TEAMS, "cleaning": swapped}) != [key]
    new_id = [{**rows[0], "id": "another"}, *rows[1:]]
    assert fingerprint(new_id) == fingerprint(rows) and keys_of("cleaning", new_id) != [key]
    new_meta = [{**rows[0], "meta": {"source": "elsewhere"}}, *rows[1:]]
    assert keys_of("cleaning", new_meta) != [key]
    assert keys_of("cleaning", rows[:-1]) != [key]


def test_the_screening_model_keys_only_the_teams_it_screens(rows):
    def f(threshold: float) -> ScreeningModel:
        return ScreeningModel({"kind": "usem3"}, np.zeros(4), 0.0, np.zeros(4), np.ones(4), threshold)

    plain, a, b = (keys_of("cleaning>optimization", rows, screener=s) for s in (None, f(0.5), f(0.6)))
    assert plain[0] == a[0] == b[0]  # PTS leaves Cleaning alone
    assert len({plain[1], a[1], b[1]}) == 3
    assert keys_of("cleaning>optimization", rows, screener=f(0.5)) == a
    with pytest.raises(TypeError, match="digest"):
        keys_of("cleaning>optimization", rows, screener=object())


def test_score_keys_follow_the_validation_file_content_and_signatures_ignore_locations(rows, tmp_path):
    val = tmp_path / "val.jsonl"
    write_rows(val, rows[:5])
    spec = {"path": str(val), "offset": 0, "limit": None}
    key = score_key(rows, {"lr": 1e-3}, {"metric": "nll_per_char"}, spec, spec, seed=0)
    write_rows(val, rows[1:6])  # same path, other content
    assert score_key(rows, {"lr": 1e-3}, {"metric": "nll_per_char"}, spec, spec, seed=0) != key
    write_rows(val, rows[:5])
    assert score_key(rows, {"lr": 1e-3}, {"metric": "nll_per_char"}, spec, spec, seed=0) == key
    assert score_key(rows, {"lr": 1e-3}, {"metric": "nll_per_char"}, spec, spec, seed=1) != key
    assert score_key(rows[1:], {"lr": 1e-3}, {"metric": "nll_per_char"}, spec, spec, seed=0) != key

    req = EvalRequest("cleaning", spec, spec, spec, spec, TEAMS, {"lr": 1e-3}, {"metric": "nll_per_char"}, 0,
                      out_dir=str(tmp_path / "a"))
    assert replace(req, out_dir="elsewhere", crm_dir=str(tmp_path / "crm")).signature == req.signature
    assert replace(req, seed=1).signature != req.signature


def test_an_identical_evaluation_is_fine_tuned_once(tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["teams=cleaning", "dataset.train_limit=60", "eval.val_limit=30",
                                           "finetune.threads=1", "accel.crm.enabled=true", "eval.seeds=2",
                                           f"cache.dir={tmp_path / 'crm'}"])
    specs = data_specs(cfg, tmp_path / "splits")
    req = replace(EvalRequest.from_config(cfg, *specs, out_dir=str(tmp_path / "run1")), strategy="cleaning")
    assert req.crm_dir == str(tmp_path / "crm") and req.fit_seeds == [0, 1]
    first = evaluate(req)
    assert first.status == "ok", first.traceback
    assert not first.score_cached and first.timings["finetune"] > 0 and not any(op["cached"] for op in first.ops)
    assert len(first.seed_scores) == 2 and first.seed_scores[0] != first.seed_scores[1]
    assert first.score == pytest.approx(sum(first.seed_scores) / 2)
    again = evaluate(replace(req, out_dir=str(tmp_path / "run2")))  # another run sharing the cache
    assert again.status == "ok", again.traceback
    assert again.score_cached and set(again.timings) == {"process"}
    assert again.score == first.score and again.metrics == first.metrics
    assert all(op["cached"] for op in again.ops) and again.rows_out == first.rows_out
    assert Crm(req.crm_dir).info()["scores"] == 2  # one per seed
    # a third seed: the first two are reused seed by seed, only the new one is fine-tuned
    more = evaluate(replace(req, seeds=3, out_dir=str(tmp_path / "run3")))
    assert not more.score_cached and more.timings["finetune"] > 0
    assert more.seed_scores[:2] == first.seed_scores and Crm(req.crm_dir).info()["scores"] == 3


def test_cli_info_and_clear(rows, crm, capsys):
    apply_strategy(Strategy.parse("cleaning>selection"), rows, TEAMS, cache=crm)
    crm.put_metrics(hashlib.sha256(b"a score").hexdigest(), {"nll_per_char": 1.5})
    assert main(["info", "--dir", str(crm.root)]) == 0
    assert "holds 2 processed datasets and 1 scores" in capsys.readouterr().out
    assert main(["clear", "--dir", str(crm.root)]) == 0
    assert "removed 2 processed datasets and 1 scores" in capsys.readouterr().out
    assert os.listdir(crm.root) == [] and crm.info() == {"datasets": 0, "scores": 0, "bytes": 0}
    CALLS.clear()
    apply_strategy(Strategy.parse("cleaning"), rows, TEAMS, cache=crm)
    assert CALLS == ["probe_cleaning"]  # nothing left to reuse
