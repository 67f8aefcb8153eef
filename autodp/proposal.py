"""A round of a search, whatever the method: the strategies proposed, the decision to go on or
stop, the rules a proposal must follow, and the feedback it gets back (paper section 3.2).

Pure vocabulary like autodp.strategy: strategy names and scores only, never data, so the agent
and every search method may import it without crossing the privacy boundary.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from autodp.strategy import MAX_TEAMS, Strategy, Team

DECISIONS = ("continue", "best_team", "no_processing")


@dataclass(frozen=True)
class Rules:
    """What a proposal may contain in one round."""

    teams: tuple[Team, ...] = tuple(Team)
    max_strategies: int = 4
    max_teams: int = MAX_TEAMS
    can_stop: bool = True
    # the strategies with a score; the final choice must be one of them (None: not checked)
    evaluated: frozenset[Strategy] | None = None


@dataclass
class Proposal:
    """One round of a search method."""

    strategies: list[Strategy]  # to evaluate this round; empty once the method stops
    decision: str  # one of DECISIONS
    best: Strategy | None  # the final choice when stopping; Strategy(()) for no processing
    # the method's own bookkeeping, journaled with the round and handed back in its feedback
    # (e.g. the agent's answer source and re-prompts, the MCTS node expanded): names and counts only
    meta: dict[str, Any] = field(default_factory=dict)
    transcript: list[dict] = field(default_factory=list)  # one JSON-ready dict per model call

    @property
    def stop(self) -> bool:
        return self.decision != "continue"


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
    meta: Mapping[str, Any] = field(default_factory=dict)  # the round's Proposal.meta

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
