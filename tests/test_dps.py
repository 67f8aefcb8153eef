"""DPS (paper 3.3.2): the paper's eq. 4 exactly, strata kept, and a sampler that keeps tails."""
import numpy as np
import pytest

from autodp.accel import dps
from autodp.data.io import load_rows
from autodp.ops.cleaning import MinHashDedup
from autodp.resources import resolve_path

SAMPLERS = ["uniform", "kmeans", "herding"]  # the seeded ones; ``paper`` is deterministic


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def bulk_and_far(n_bulk: int = 1900, n_far: int = 100, d: int = 16, seed: int = 0):
    """A big cluster and a small cluster in an orthogonal direction; the rows and the far mask."""
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[[0, 1]]
    labels = np.repeat([0, 1], [n_bulk, n_far])
    return unit(centres[labels] + rng.normal(scale=0.15, size=(len(labels), d))), labels == 1


def clustered(n: int = 3000, d: int = 16, seed: int = 0) -> np.ndarray:
    """Six clusters of unequal size and spread around nearby directions."""
    rng = np.random.default_rng(seed)
    centres = unit(np.eye(d)[0] + 0.8 * rng.normal(size=(6, d)) / np.sqrt(d))
    labels = rng.choice(6, size=n, p=[0.4, 0.25, 0.15, 0.1, 0.07, 0.03])
    return unit(centres[labels] + rng.normal(scale=rng.uniform(0.05, 0.2, 6)[labels, None], size=(n, d)))


def paper_brute_force(emb: np.ndarray, k: int) -> list[int]:
    """Eq. 4 term by term: the n x n cosine matrix, summed over the unselected columns."""
    cos = emb @ emb.T / np.outer(np.linalg.norm(emb, axis=1), np.linalg.norm(emb, axis=1))
    unselected, chosen = list(range(len(emb))), []
    for _ in range(k):
        scores = [cos[x, unselected].sum() for x in unselected]
        chosen.append(unselected.pop(int(np.argmax(scores))))
    return chosen


@pytest.mark.parametrize("seed", range(3))
def test_paper_is_eq4_exactly(seed):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(40, 6))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    expected = paper_brute_force(emb, 12)
    assert list(dps.METHODS["paper"](emb, 12, rng, dps.serial_map)) == expected
    assert list(dps.sample(emb, 0.3, "paper")) == sorted(expected)
    # The rule is genuinely iterative: a one-shot ranking by similarity to all rows differs.
    assert sorted(np.argsort(-(emb @ emb.sum(axis=0)))[:12]) != sorted(expected)


@pytest.mark.parametrize("method", list(dps.METHODS))
def test_sizes_and_indices(method):
    emb = clustered(1000)
    for ratio, size in [(0.2, 200), (0.0004, 1), (1.0, 1000)]:
        idx = dps.sample(emb, ratio, method, seed=1)
        assert len(idx) == size
        assert np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] < len(emb)


@pytest.mark.parametrize("method", list(dps.METHODS))
def test_strata_keep_their_fractions(method):
    emb = clustered(1000)
    strata = np.zeros(1000, dtype=int)
    strata[np.random.default_rng(0).permutation(1000)[:300]] = 1
    strata[:2] = 2  # a tiny stratum still gets a row
    idx = dps.sample(emb, 0.1, method, seed=0, strata=strata)
    counts = np.bincount(strata[idx], minlength=3)
    expected = [int(0.1 * np.sum(strata == s) + 0.5) for s in range(3)]
    assert list(counts) == [expected[0], expected[1], 1]


def test_noisy_flags_as_strata_keep_noisy_fraction():
    emb = clustered(2000)
    noisy = np.random.default_rng(3).random(2000) < 0.27
    idx = dps.sample(emb, 0.2, strata=noisy)
    assert noisy[idx].sum() == round(0.2 * noisy.sum()) and (~noisy[idx]).sum() == round(0.2 * (~noisy).sum())


@pytest.mark.parametrize("method", SAMPLERS)
def test_seed_determines_the_sample(method):
    emb = clustered(2000)
    a, b, c = (dps.sample(emb, 0.2, method, seed=s) for s in (5, 5, 6))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kwargs, message", [
    ({"ratio": 0.0}, "ratio"), ({"ratio": 1.5}, "ratio"), ({"ratio": float("nan")}, "ratio"),
    ({"method": "nope"}, "unknown DPS method"), ({"strata": np.zeros(7, dtype=bool)}, "strata"),
    ({"emb": np.zeros(10, dtype=np.float32)}, "2-D"), ({"groups": np.zeros(7, dtype=int)}, "groups"),
])
def test_bad_input_is_refused(kwargs, message):
    args = {"emb": clustered(100), "ratio": 0.2, "method": "uniform", "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        dps.sample(**args)


def test_paper_takes_the_centre_and_misses_the_far_cluster_herding_keeps_it():
    emb, far = bulk_and_far()
    paper = dps.sample(emb, 0.2, "paper")
    assert far[paper].sum() == 0
    assert dps.tail_coverage(emb[paper], emb) < 0.05
    for method in ("herding", "kmeans"):
        idx = dps.sample(emb, 0.2, method)
        assert abs(far[idx].sum() - 0.2 * far.sum()) <= 1, method
        assert dps.tail_coverage(emb[idx], emb) > 0.7, method


def test_herding_has_lower_mmd_than_paper_and_uniform():
    emb = clustered(3000)  # large enough for several k-means cells (k / FEATURES)
    mmd = {m: dps.mmd_rbf(emb[dps.sample(emb, 0.2, m)], emb, seed=99) for m in ("paper", "herding")}
    uniform = np.mean([dps.mmd_rbf(emb[dps.sample(emb, 0.2, "uniform", seed=s)], emb, seed=99)
                       for s in range(3)])
    assert mmd["herding"] < 0.8 * uniform < mmd["paper"]


def counted(run, sent: list[int]):
    """A map that appends to ``sent`` how many items it is given, then runs them with ``run``."""
    def pmap(fn, items):
        items = list(items)
        sent.append(len(items))
        return run(fn, items)
    return pmap


def test_herding_cells_are_independent_of_the_order_they_run_in():
    """Each cell is herded from its own seed: an engine's workers may run them in any order."""
    emb, strata = clustered(6000), np.arange(6000) % 3 == 0
    sent = []
    backwards = counted(lambda fn, items: [fn(x) for x in items[::-1]][::-1], sent)
    assert np.array_equal(dps.sample(emb, 0.2, "herding", 4, strata, pmap=backwards),
                          dps.sample(emb, 0.2, "herding", 4, strata))
    assert sent == [3, 2]  # cells of the 4000 clean rows, then of the 2000 noisy ones


def test_duplicate_rows_do_not_make_one_huge_cell():
    emb = np.tile(unit(np.ones((1, 8))), (5000, 1))  # one k-means cluster, cut into pieces
    members, quota = dps._cells(emb, 1000, np.random.default_rng(0))
    assert max(map(len, members)) <= 2 * 5000 / round(1000 / dps.FEATURES) and quota.sum() == 1000
    assert len(dps.sample(emb, 0.2, "herding")) == 1000


def test_mmd_and_tail_coverage_measure_what_they_say():
    emb = clustered(3000)
    random = emb[np.random.default_rng(0).choice(3000, 600, replace=False)]
    shifted = unit(emb[:600] + 0.5 * np.eye(16)[3])
    assert dps.mmd_rbf(emb, emb) < 1e-6
    assert dps.mmd_rbf(random, emb) < dps.mmd_rbf(shifted, emb) / 5
    assert dps.mmd_rbf(random, emb, seed=4) == dps.mmd_rbf(random, emb, seed=4)

    dist = np.linalg.norm(emb - emb.mean(axis=0), axis=1)
    by_distance = np.argsort(dist)
    assert dps.tail_coverage(emb[by_distance[:2000]], emb) == 0
    assert dps.tail_coverage(emb[by_distance[-300:]], emb) == pytest.approx(10, rel=0.01)
    assert 0.7 < dps.tail_coverage(random, emb) < 1.3


@pytest.mark.parametrize("method", ["uniform", "herding"])
def test_near_duplicate_clusters_are_sampled_whole_so_dedup_finds_its_share(method):
    """On cmd_noisy (33 of 400 rows are near-duplicates of kept rows), dedup on a 20% row
    sample finds about a quarter of that share: most pairs are split. With the clusters as
    units the sample keeps the full set's share, and still about 20% of the rows."""
    rows = load_rows(resolve_path("pkg:autodp/data/samples/cmd_noisy/train.jsonl"))
    dedup = MinHashDedup()
    groups = np.asarray(dedup.clusters(dedup.features(rows)))
    full = 1 - len(dedup(rows)) / len(rows)
    assert full == pytest.approx(33 / 400)
    emb = unit(np.random.default_rng(0).normal(size=(len(rows), 16)))

    def share(groups_):
        found = []
        for seed in range(10):
            sub = [rows[i] for i in dps.sample(emb, 0.2, method, seed, groups=groups_)]
            assert abs(len(sub) - 80) <= 8  # whole clusters: about, not exactly, 20%
            found.append(1 - len(dedup(sub)) / len(sub))
        return np.mean(found)

    assert share(None) < full / 2
    assert share(groups) == pytest.approx(full, abs=0.015)


def test_a_group_is_in_the_noisy_stratum_when_any_member_is():
    emb = clustered(200)
    groups = np.arange(200)
    groups[1::2] -= 1  # pairs (0, 1), (2, 3), ...
    noisy = np.zeros(200, dtype=bool)
    noisy[1:40:2] = True  # one member of each of the first 20 pairs
    idx = dps.sample(emb, 0.5, "uniform", 0, strata=noisy, groups=groups)
    assert np.array_equal(groups[idx][::2], idx[::2]) and np.array_equal(groups[idx][1::2], idx[::2])
    assert np.sum(idx < 40) == 20  # half of the 20 noisy pairs, both members


def test_keep_together_names_an_operator_that_finds_clusters():
    teams = {"cleaning": [{"minhash_dedup": {"threshold": 0.7}}, "special_char_filter"]}
    rows = [{"id": str(i), "instruction": "q" * 20, "input": "", "output": "a" * 30 + str(i % 2)}
            for i in range(4)]
    assert list(dps.duplicate_groups(rows, teams, "minhash_dedup")) == [0, 0, 0, 0]
    assert dps.duplicate_groups(rows, {"cleaning": ["special_char_filter"]}, "minhash_dedup") is None
    assert dps.duplicate_groups(rows, teams, None) is None
    with pytest.raises(ValueError, match="special_char_filter.*minhash_dedup"):
        dps.duplicate_groups(rows, teams, "special_char_filter")


@pytest.mark.slow
def test_process_ray_embeds_on_actors_what_this_process_embeds(cmd_rows):
    """DPS under process=ray: the rows' texts encoded in slices on two Ray actors, each with its own
    encoder, give this process's vectors under the same cache name (the sample is then drawn here)."""
    import ray
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from autodp.accel.embed import embed_rows
    from autodp.process.local import LocalEngine
    from autodp.process.ray_engine import RayEngine
    from conftest import RAY_ADDRESS, ROOT

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config").accel.dps.encoder, resolve=True)
    rows = cmd_rows[:120]
    with LocalEngine().encoder(cfg) as enc:
        here, name = embed_rows(rows, enc, cache=False), enc.id
    try:
        with RayEngine(address=RAY_ADDRESS, num_cpus=2, progress=False,
                       scores={"actors": 2, "cpus": 1, "gpus": 0}).encoder(cfg) as enc:
            assert enc.id == name
            there = embed_rows(rows, enc, cache=False)
            assert enc.encode([]).shape == (0, here.shape[1])
    finally:
        ray.shutdown()
    assert there.shape == here.shape == (120, here.shape[1]) and np.allclose(there, here, atol=1e-5)


@pytest.mark.slow
def test_process_ray_herds_each_cell_in_a_ray_task_as_this_process_does():
    """DPS's sampling under process=ray: herding's cells as Ray tasks pick the rows picked here."""
    import ray

    from autodp.process.ray_engine import RayEngine
    from conftest import RAY_ADDRESS

    emb, groups = clustered(8000, d=32), np.arange(8000) // 2 * 2  # pairs as near-duplicate groups
    sent = []
    here = dps.sample(emb, 0.4, "herding", 7, groups=groups, pmap=counted(dps.serial_map, sent))
    try:
        there = dps.sample(emb, 0.4, "herding", 7, groups=groups,
                           pmap=counted(RayEngine(address=RAY_ADDRESS, num_cpus=2, progress=False).map, sent))
    finally:
        ray.shutdown()
    assert sent[0] == sent[1] > 1 and len(here) == 3200 and np.array_equal(there, here)
