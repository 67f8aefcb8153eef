"""R(f) as an estimate: paired differences over fine-tune seeds, their standard error, and the
threshold a difference must pass to count as more than noise.

Every strategy, `none` included, is fine-tuned with the same seeds (same data order and
initialisation), so s_k is the mean of per-seed differences d_i = r_k,i - r_0,i. With the 2-3 seeds
a CPU can afford, one strategy's own spread is a poor estimate of the noise, so the variance of
the differences is pooled over every strategy of the search (assumed alike: the noise is the
fine-tune's, not the data's), and the threshold is a Student t quantile for the pooled degrees of
freedom, at the one-sided level that ``z`` standard errors give under a normal law.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

from scipy import stats

from autodp.evaluate.request import EvalResult


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float | None  # None: no spread to estimate it from (one seed)
    n: int

    def t(self) -> float | None:
        return None if not self.se else self.mean / self.se


def differences(scores: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Per-seed paired differences; both lists are in the order of the same seeds."""
    if len(scores) != len(baseline):
        raise ValueError(f"paired scores need the same seeds: {len(scores)} vs {len(baseline)} scores")
    return [a - b for a, b in zip(scores, baseline)]


def pooled(diffs: Mapping[str, Sequence[float]], pool: Collection[str] | None = None) -> tuple[dict[str, Estimate], int]:
    """Mean difference per strategy with a standard error from the within-strategy variance
    pooled over ``pool`` (default: all), and the pooled degrees of freedom. Leave out of ``pool``
    what is not an independent draw of the noise: `none` itself, and strategies whose processed
    data equals none's or another's (their differences are zero, or the same, by construction)."""
    keys = [k for k in diffs if diffs[k] and (pool is None or k in pool)]
    ss = sum(sum((d - statistics.fmean(diffs[k])) ** 2 for d in diffs[k]) for k in keys)
    df = sum(len(diffs[k]) - 1 for k in keys)
    sd = math.sqrt(ss / df) if df > 0 else None
    return {k: Estimate(statistics.fmean(ds), sd / math.sqrt(len(ds)) if sd else None, len(ds))
            for k, ds in diffs.items() if ds}, df


def seed_scores(r: EvalResult) -> list[float]:
    """r per fine-tune seed; a result from before seeds were recorded counts as one seed."""
    return r.seed_scores or ([r.score] if r.score is not None else [])


def versus(base: EvalResult, results: Mapping[str, EvalResult]) -> tuple[dict[str, Estimate], int]:
    """Each successful result's paired estimate against ``base`` (no processing), with the SE
    pooled over one strategy per distinct processed dataset that differs from the base's data."""
    ok = {k: r for k, r in results.items() if r.status == "ok" and r is not base}
    diffs = {k: differences(seed_scores(r), seed_scores(base)) for k, r in ok.items()}
    pool = {(r.data_fingerprint or k): k for k, r in ok.items()
            if r.data_fingerprint is None or r.data_fingerprint != base.data_fingerprint}
    return pooled(diffs, set(pool.values()))


# How a search names its winner (search.pick) and splits its level over comparisons (search.correction).
PICKS = ("top", "significant")
CORRECTIONS = ("bonferroni", "none")


def threshold(z: float, df: int, comparisons: int, correction: str) -> float:
    """How many standard errors s must exceed to count as a win: the one-sided level of ``z`` under
    a normal law, split over ``comparisons`` (Bonferroni) when asked, as a t quantile for ``df``."""
    if correction not in CORRECTIONS:
        raise ValueError(f"search.correction must be one of {CORRECTIONS}, not {correction!r}")
    alpha = stats.norm.sf(z)
    if correction == "bonferroni":
        alpha /= max(1, comparisons)
    return float(stats.t.isf(alpha, df)) if df > 0 else math.inf
