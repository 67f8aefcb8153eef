"""Random search, RS (paper section 4.1.2): a few strategies drawn at random from every possible
one, evaluated, and the best one returned."""
from __future__ import annotations

import random
from typing import Sequence

from autodp.proposal import Proposal, RoundFeedback
from autodp.search.proposer import Context, final_choice
from autodp.strategy import strategy_space


class RandomSearch:
    """``draws`` distinct strategies drawn with the run's seed from the whole space of the offered
    teams (65 for four: no processing is one of them, as in the paper's "all possible strategy
    combinations"; drawing it costs nothing, r_0 is scored anyway), evaluated in one round; the
    top score among them is the final choice."""

    def __init__(self, ctx: Context, draws: int = 5):
        space = strategy_space(ctx.teams)
        self.draws = random.Random(ctx.seed).sample(space, min(draws, len(space)))

    def propose(self, round: int, history: Sequence[RoundFeedback], note: str | None = None) -> Proposal:
        if round == 1:
            return Proposal(list(self.draws), "continue", None)
        return final_choice(history)

