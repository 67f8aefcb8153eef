"""The seam between the search loop and a search method.

A method is a ``Proposer``: from the round number and the whole history (each round's scores and
the method's own ``meta``) it proposes the next round's strategies, or stops with its final
choice. The loop journals every proposal and every evaluation and, on resume, replays the journal
instead of asking again, so a method must keep no state that the history does not give back: its
next proposal is a function of the history (and its seed). Everything the methods share (the
evaluation budget, journaling, resume, the stop and repeat rules, the feedback, the pick rule,
callbacks) is the loop's (autodp/search/loop.py).

A method is one file under autodp/search/methods/ and one conf/search/<method>.yaml whose
``proposer._target_`` names the callable that builds it from a ``Context`` (autodp.run, the one
place it is instantiated).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from autodp.proposal import Proposal, RoundFeedback
from autodp.strategy import Strategy, Team


class Proposer(Protocol):
    def propose(self, round: int, history: Sequence[RoundFeedback], note: str | None = None) -> Proposal:
        """Round ``round`` (from 1) after ``history``; ``note``: a word from the loop, e.g. that the
        last proposal held only evaluated strategies."""


@dataclass(frozen=True)
class Context:
    """What the run gives every method; each method's YAML adds its own knobs."""

    teams: tuple[Team, ...]  # the teams offered: those with operators in conf/teams
    seed: int
    agent: Callable[[], Proposer]  # builds the conf/agent agent: called only by methods that ask an LLM


def final_choice(history: Sequence[RoundFeedback]) -> Proposal:
    """Stop with the top-scoring strategy evaluated so far (the first one on ties), even one below
    no processing; no processing when that is the top one or nothing scored."""
    scored = [(f.score, -i, f.strategy) for i, f in enumerate(f for r in history for f in r.results)
              if f.score is not None]
    best = max(scored)[2] if scored else Strategy(())
    return Proposal([], "no_processing", best) if best.is_none else Proposal([], "best_team", best)
