"""LLM+greedy (paper section 4.4, Table 6): the agent's first round, from the same agent and
prompt as autodp, evaluated once; the best of it is returned with no refinement."""
from __future__ import annotations

from typing import Sequence

from autodp.proposal import Proposal, RoundFeedback
from autodp.search.proposer import Context, final_choice


class Greedy:
    def __init__(self, ctx: Context):
        self.agent = ctx.agent()

    def propose(self, round: int, history: Sequence[RoundFeedback], note: str | None = None) -> Proposal:
        if round == 1:
            return self.agent.propose(1, [], note)
        return final_choice(history)
