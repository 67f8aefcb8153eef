"""Distribution-preserving sampling (DPS, paper 3.3.2): the subset of rows that strategies are
evaluated on instead of the full dataset, chosen on the rows' embeddings.

``sample`` takes ratio * n_s rows (rounded, at least one) from each stratum separately, so
with the screening model's noisy flags as strata (paper eq. 5) the sample keeps the noisy
fraction. Within a stratum one of ``METHODS`` picks the rows:

- ``paper``: eq. 4 as written. It keeps taking the row most similar to all rows not taken yet,
  which is the centre of the data: tails and small far clusters are left out.
- ``uniform``: uniform without replacement, the baseline.
- ``kmeans``: stratified sampling over about k / FEATURES k-means cells, each cell sampled in
  proportion to its size, members at random. Every region keeps its share.
- ``herding`` (default): the same cells and shares; inside each cell kernel herding chooses
  the members whose mean in an RBF kernel's feature space matches the cell's mean.

With ``groups`` the units sampled are groups of rows, taken or left whole: near-duplicate
clusters (``duplicate_groups``, with the dedup operator's own settings). A 20% sample of rows
splits duplicate pairs, so dedup drops 2% of it against 8.25% of the full cmd_noisy set, and the
sample under-rates cleaning; with clusters as units, 8.2-8.5% (benchmarks/RESULTS.md).

``sample_rows`` applies it to a training set: embeddings from a configured encoder (cached per
dataset), strata from the screening model F. ``mmd_rbf`` and ``tail_coverage`` measure how well
a sample keeps the full set's distribution (benchmarks/dps.py compares the methods with them).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import numpy as np

from autodp.accel.embed import Encoder, embed_rows
from autodp.data.io import Row
from autodp.ops.base import OPERATORS, build_op, spec_name

log = logging.getLogger(__name__)

Map = Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]]  # (fn, items) -> [fn(item), ...] in order
# (emb, k, rng, pmap) -> k row indices; pmap runs the method's independent pieces of work (an engine's map)
Method = Callable[[np.ndarray, int, np.random.Generator, Map], np.ndarray]
METHODS: dict[str, Method] = {}
DEFAULT = "herding"  # lowest MMD on every set measured; 1M rows in 11 s (benchmarks/RESULTS.md)
FEATURES = 256  # random Fourier features that herding matches per cell; also about its picks per cell
KMEANS_FIT_ROWS = 65536  # cells are fitted on a subsample; all rows are then assigned
KMEANS_ITERS = 10
CHUNK = 16384  # rows per block in O(n * width) passes: bounds their temporary memory


def register(fn: Method) -> Method:
    METHODS[fn.__name__.lstrip("_")] = fn
    return fn


def serial_map(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    return [fn(x) for x in items]


def sample(emb: np.ndarray, ratio: float, method: str = DEFAULT, seed: int = 0,
           strata: np.ndarray | None = None, groups: np.ndarray | None = None, pmap: Map = serial_map
           ) -> np.ndarray:
    """Sorted indices of the chosen rows of ``emb`` ((n, d), L2-normalised): ratio * n_s rows,
    rounded half up and at least one, from each stratum of n_s rows (a stratum is the rows with
    one value of ``strata``, e.g. the screening model's noisy flags; all rows when None).

    ``groups`` (per row, the index of its group's representative row) makes whole groups the
    units: ratio of the groups of each stratum are chosen on their representatives' embeddings,
    with all their members; a group's stratum is its members' largest value (noisy if any is).

    ``pmap`` runs a method's independent pieces (herding's cells): an engine's ``map`` runs them on
    its workers, with the same result as here."""
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (len(emb),):
            raise ValueError(f"groups must have shape ({len(emb)},), got {groups.shape}")
        reps, member_of = np.unique(groups, return_inverse=True)
        unit_strata = None
        if strata is not None:
            unit_strata = np.full(len(reps), np.min(strata), dtype=np.asarray(strata).dtype)
            np.maximum.at(unit_strata, member_of, np.asarray(strata))
        picked = sample(emb[reps], ratio, method, seed, unit_strata, pmap=pmap)
        return np.flatnonzero(np.isin(member_of, picked))
    if emb.ndim != 2:
        raise ValueError(f"emb must be 2-D (rows, dims), got shape {emb.shape}")
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if method not in METHODS:
        raise ValueError(f"unknown DPS method {method!r}; known: {sorted(METHODS)}")
    if strata is None:
        strata = np.zeros(len(emb), dtype=bool)
    strata = np.asarray(strata)
    if strata.shape != (len(emb),):
        raise ValueError(f"strata must have shape ({len(emb)},), got {strata.shape}")
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(strata):
        rows = np.flatnonzero(strata == value)
        k = max(1, int(ratio * len(rows) + 0.5))
        if k == len(rows):
            chosen.append(rows)
            continue
        part = emb if len(rows) == len(emb) else emb[rows]  # one stratum: no copy of a big array
        chosen.append(rows[METHODS[method](part, k, rng, pmap)])
    log.info("DPS (%s, ratio %g, seed %d): %d of %d rows from %d strata",
             method, ratio, seed, sum(map(len, chosen)), len(emb), len(chosen))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def duplicate_groups(rows: list[Row], teams_cfg: Mapping[str, Any], op_name: str | None) -> np.ndarray | None:
    """Per row, the index of the row it near-duplicates (its own when none), found by ``op_name``
    with the settings it has in ``teams_cfg``; None when no team runs that operator (nothing on
    the sample then depends on duplicates staying together) or when ``op_name`` is None."""
    if op_name is None:
        return None
    if not hasattr(OPERATORS.get(op_name), "clusters"):
        raise ValueError(f"accel.dps.keep_together={op_name!r} is not a registered operator that finds "
                         f"clusters; those that do: {sorted(k for k, v in OPERATORS.items() if hasattr(v, 'clusters'))}")
    specs = [s for team in teams_cfg.values() for s in team or []
             if spec_name(s) == op_name]
    if not specs:
        return None
    op = build_op(specs[0])
    return np.asarray(op.clusters(op.features(rows)))


def sample_rows(rows: list[Row], encoder: Encoder, ratio: float, method: str, seed: int,
                screener: Any = None, groups: np.ndarray | None = None, pmap: Map = serial_map) -> list[Row]:
    """The DPS sample of ``rows``, in row order: embedded with ``encoder`` (autodp.accel.embed; an
    engine's, which may encode on a cluster),
    stratified by the screening model's noisy flags when a ``screener`` is given (paper eq. 5),
    whole ``groups`` (``duplicate_groups``) taken or left, the method's pieces run by ``pmap``."""
    t0 = time.perf_counter()
    emb = embed_rows(rows, encoder)
    strata = None if screener is None else np.asarray(screener.predict(rows), dtype=bool)
    idx = sample(emb, ratio, method, seed, strata, groups, pmap)
    noisy = "" if strata is None else f", noisy {int(strata[idx].sum())} of {int(strata.sum())}"
    grouped = "" if groups is None else \
        f", near-duplicates {int((groups[idx] != idx).sum())} of {int((groups != np.arange(len(rows))).sum())}"
    log.info("DPS: %d of %d rows%s%s in %.1f s", len(idx), len(rows), noisy, grouped, time.perf_counter() - t0)
    return [rows[i] for i in idx]


@register
def _paper(emb: np.ndarray, k: int, rng: np.random.Generator, pmap: Map) -> np.ndarray:
    """Eq. 4 exactly: x_i = argmax over unselected x of sum over unselected p of cos(e_x, e_p).

    Rows are unit vectors, so that sum is e_x . (S - sum of the selected rows), S the sum of all
    rows: one running vector, no n x n matrix, O(n d) per pick and O(n k d) in all. As in the
    paper the sum includes p = x (x is unselected while it is scored); that term is 1 for every
    x, so it does not move the argmax. The first picks are the rows closest to the mean
    direction, and the remaining sum stays dominated by the bulk, so small far clusters and
    tails are reached last, if at all. Float64 so that near-ties break as the formula would.
    """
    e = emb.astype(np.float64)
    rest = e.sum(axis=0)  # sum over the unselected rows
    taken = np.zeros(len(e), dtype=bool)
    chosen = np.empty(k, dtype=np.int64)
    for i in range(k):
        score = e @ rest
        score[taken] = -np.inf
        x = int(np.argmax(score))
        chosen[i], taken[x] = x, True
        rest -= e[x]
    return chosen


@register
def _uniform(emb: np.ndarray, k: int, rng: np.random.Generator, pmap: Map) -> np.ndarray:
    return rng.choice(len(emb), size=k, replace=False)


@register
def _kmeans(emb: np.ndarray, k: int, rng: np.random.Generator, pmap: Map) -> np.ndarray:
    """Stratified sampling over k-means cells: proportional shares, members at random."""
    members, quota = _cells(emb, k, rng)
    return np.concatenate([rng.choice(rows, size=q, replace=False) for rows, q in zip(members, quota)])


@register
def _herding(emb: np.ndarray, k: int, rng: np.random.Generator, pmap: Map) -> np.ndarray:
    """Kernel herding (Chen, Welling and Smola 2010) inside each k-means cell of ``_cells``:
    repeatedly take the row, not taken yet, that best moves the taken rows' mean feature vector
    towards the cell's mean. Features are FEATURES random Fourier features of the RBF kernel
    with the median-distance bandwidth, the kernel ``mmd_rbf`` measures, so each pick greedily
    lowers that MMD. A pick costs O(cell rows * FEATURES); with about FEATURES picks per cell
    that is O(n * FEATURES^2) time in all, whatever the ratio, and O(cell rows * FEATURES)
    memory besides the cells. Cells are independent: ``pmap`` herds them (on an engine's
    workers), each from a seed of its own drawn here, so where it runs does not change the rows."""
    bandwidth = median_distance(emb, rng)
    members, quota = _cells(emb, k, rng)
    seeds = rng.integers(2**63, size=len(members))
    cells = ((emb[rows], q, s) for rows, q, s in zip(members, quota, seeds))  # a cell's rows are copied as sent
    picks = pmap(partial(_herd, bandwidth=bandwidth), cells)
    return np.concatenate([rows[p] for rows, p in zip(members, picks)])


def _herd(cell: tuple[np.ndarray, int, int], bandwidth: float) -> np.ndarray:
    """Indices of the q rows that herding picks in one cell (``cell``: its rows' embeddings, q, seed)."""
    emb, q, seed = cell
    # Fresh frequencies per cell: herding leaves an error outside the span of the features
    # it matched; with shared frequencies that error has the same bias in every cell and adds
    # up over the cells (measured at 1M rows: no better than uniform); fresh ones cancel.
    phi = _rff(emb, *_frequencies(emb.shape[1], FEATURES, bandwidth, np.random.default_rng(seed)))
    target = phi.mean(axis=0, dtype=np.float64)
    residual = target.copy()  # (t + 1) * target - sum of the t picked rows' features
    taken = np.zeros(len(emb), dtype=bool)
    chosen = np.empty(q, dtype=np.int64)
    for i in range(q):
        score = phi @ residual.astype(np.float32)
        score[taken] = -np.inf
        x = int(np.argmax(score))
        taken[x], chosen[i] = True, x
        residual += target - phi[x]
    return chosen


def _cells(emb: np.ndarray, k: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Rows of each cell and how many to take from each: k split in proportion to cell size,
    rounded by largest remainder so that the quotas sum to exactly k. Cells are k / FEATURES
    k-means clusters, so that herding gets about as many picks per cell as features to match
    (50 picks per cell for 512 features measured barely better than uniform). Clusters are cut
    at random into pieces of at most twice the mean size: many (near-)duplicate rows make one
    big cluster, which would make herding quadratic."""
    n, c = len(emb), max(1, round(k / FEATURES))
    cap = 2 * -(-n // c)
    labels = _kmeans_labels(emb, c, rng)
    order = rng.permutation(n)
    order = order[np.argsort(labels[order], kind="stable")]  # by cell, random within a cell
    cell = labels[order]
    sizes = np.bincount(cell)
    piece = (np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)) // cap
    members = np.split(order, np.flatnonzero((np.diff(cell) != 0) | (np.diff(piece) != 0)) + 1)
    share = k * np.array([len(m) for m in members]) / n
    quota = np.floor(share).astype(np.int64)
    quota[np.argsort(quota - share, kind="stable")[:k - quota.sum()]] += 1
    return members, quota


def _kmeans_labels(emb: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means with c centres started at random rows, fitted on at most KMEANS_FIT_ROWS
    rows (the centres settle long before all rows are needed), then every row's nearest centre."""
    if c == 1:
        return np.zeros(len(emb), dtype=np.int64)
    fit = emb[rng.choice(len(emb), KMEANS_FIT_ROWS, replace=False)] if len(emb) > KMEANS_FIT_ROWS else emb
    centres = fit[rng.choice(len(fit), c, replace=False)].astype(np.float32)
    for _ in range(KMEANS_ITERS):
        labels = _nearest(fit, centres)
        sizes = np.bincount(labels, minlength=c)
        full = sizes > 0  # an empty cluster keeps its centre
        starts = (np.cumsum(sizes) - sizes)[full]
        sums = np.add.reduceat(fit[np.argsort(labels, kind="stable")], starts, axis=0, dtype=np.float64)
        centres[full] = sums / sizes[full, None]
    return _nearest(emb, centres)


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # argmin |x - c|^2 = argmin |c|^2 - 2 x.c; blocks of CHUNK rows bound the (rows, c) matrix
    sq = (centres * centres).sum(axis=1)
    return np.concatenate([np.argmin(sq - 2 * x[i:i + CHUNK] @ centres.T, axis=1)
                           for i in range(0, len(x), CHUNK)])


def median_distance(x: np.ndarray, rng: np.random.Generator, rows: int = 1000) -> float:
    """Median Euclidean distance between distinct pairs of up to ``rows`` random rows of x (the
    usual RBF bandwidth heuristic); 1.0 when all those rows coincide."""
    s = x[rng.choice(len(x), min(rows, len(x)), replace=False)].astype(np.float64)
    sq = (s * s).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2 * s @ s.T
    median = float(np.sqrt(max(np.median(d2[np.triu_indices(len(s), 1)]), 0.0))) if len(s) > 1 else 0.0
    return median if median > 0 else 1.0


def _frequencies(d: int, features: int, bandwidth: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and phases of random Fourier features for exp(-|x - y|^2 / (2 bandwidth^2))."""
    w = rng.normal(scale=1.0 / bandwidth, size=(d, features)).astype(np.float32)
    return w, rng.uniform(0, 2 * np.pi, size=features).astype(np.float32)


def _rff(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Random Fourier features (Rahimi and Recht 2007): _rff(x) . _rff(y) estimates the RBF kernel."""
    return np.sqrt(2.0 / w.shape[1], dtype=np.float32) * np.cos(x @ w + b)


def mmd_rbf(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None, features: int = 2048,
            seed: int = 0) -> float:
    """MMD between the rows of x (a sample) and of y (the reference, e.g. the full set) for the
    RBF kernel exp(-|a - b|^2 / (2 bandwidth^2)); bandwidth defaults to the median distance in y,
    so samples compared against one y share one kernel.

    Estimated with ``features`` random Fourier features as |mean _rff(x) - mean _rff(y)|: its
    square is an unbiased estimate (over the random frequencies) of the exact biased-statistic
    MMD^2 of the two point sets, in O((len(x) + len(y)) * features * d) time and
    O(CHUNK * features) memory, so it runs on a million rows. ``seed`` fixes the frequencies:
    keep it fixed to compare samples, and different from any seed a sampler used.
    """
    rng = np.random.default_rng(seed)
    if bandwidth is None:
        bandwidth = median_distance(y, rng)
    w, b = _frequencies(y.shape[1], features, bandwidth, rng)

    def mean_features(a: np.ndarray) -> np.ndarray:
        return sum(_rff(a[i:i + CHUNK], w, b).sum(axis=0, dtype=np.float64)
                   for i in range(0, len(a), CHUNK)) / len(a)

    return float(np.linalg.norm(mean_features(x) - mean_features(y)))


def tail_coverage(sample_emb: np.ndarray, full_emb: np.ndarray, q: float = 0.9) -> float:
    """How well the sample keeps the tails: the tail is every row whose distance from the full
    set's mean is at least that distance's q-quantile over the full set; coverage is the share of
    sample rows in the tail divided by the share of full rows in it. 1.0: the tail is kept in
    proportion; 0.0: no tail row was sampled; above 1: the tail is over-represented."""
    centre = full_emb.mean(axis=0, dtype=np.float64).astype(np.float32)
    full_dist = _distance(full_emb, centre)
    edge = np.quantile(full_dist, q)
    return float(np.mean(_distance(sample_emb, centre) >= edge) / np.mean(full_dist >= edge))


def _distance(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    # |x - c| through |x|^2 - 2 x.c + |c|^2: no (n, d) temporary
    return np.sqrt(np.maximum(np.einsum("ij,ij->i", x, x) - 2 * x @ c + c @ c, 0))
