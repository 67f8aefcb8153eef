"""What the agent learns from the evaluator: strategies and scores, never data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from autodp.strategy import Strategy


class Feedback(NamedTuple):
    """One evaluated strategy: its score s_k = r_k - r_0 (eq. 1) with its standard error and
    whether it beats 0 beyond noise, or why its evaluation failed."""

    strategy: Strategy
    score: float | None
    error: str | None = None
    se: float | None = None
    beyond_noise: bool | None = None


@dataclass(frozen=True)
class RoundFeedback:
    round: int
    results: tuple[Feedback, ...]

    def __post_init__(self) -> None:
        # callers may pass plain (strategy, score, error) tuples in a list
        object.__setattr__(self, "results", tuple(Feedback(*r) for r in self.results))


def tried(history: list[RoundFeedback]) -> set[Strategy]:
    """Every strategy evaluated so far, failed ones included."""
    return {f.strategy for r in history for f in r.results}


def scores(history: list[RoundFeedback]) -> dict[Strategy, float]:
    """The latest score of every successfully evaluated strategy, in order of first evaluation."""
    out: dict[Strategy, float] = {}
    for r in history:
        for f in r.results:
            if f.score is not None:
                out[f.strategy] = f.score
    return out
