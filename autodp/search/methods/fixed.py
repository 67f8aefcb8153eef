"""The paper's fixed baselines (section 4.1.2): No-process (the original data) and All-process
(every team, cleaning > optimization > generation > selection), decided before any score."""
from __future__ import annotations

from typing import Sequence

from autodp.proposal import Proposal, RoundFeedback
from autodp.search.proposer import Context
from autodp.strategy import Strategy, all_process


class Fixed:
    """Evaluates ``strategy`` once (no processing is r_0 itself) and chooses it. ``strategy``: a key
    such as 'cleaning>selection', 'none', or 'all' for every offered team in the paper's order."""

    def __init__(self, ctx: Context, strategy: str):
        self.strategy = all_process(ctx.teams) if strategy == "all" else Strategy.parse(strategy)
        missing = [t.value for t in self.strategy.teams if t not in ctx.teams]
        if missing:
            raise ValueError(f"search.proposer.strategy={strategy!r} uses teams not offered: {', '.join(missing)}")

    def propose(self, round: int, history: Sequence[RoundFeedback], note: str | None = None) -> Proposal:
        if self.strategy.is_none:
            return Proposal([], "no_processing", Strategy(()))
        if round == 1:
            return Proposal([self.strategy], "continue", None)
        return Proposal([], "best_team", self.strategy)
