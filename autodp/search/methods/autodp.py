"""LLM-AutoDP (paper section 3.2): the agent proposes every round from the whole history, with
feedback scores, and decides itself when to stop and which strategy is its Best Team."""
from __future__ import annotations

from autodp.search.proposer import Context, Proposer


def agent_loop(ctx: Context) -> Proposer:
    """The conf/agent agent as it is: its ``propose`` already is a round of the paper's loop."""
    return ctx.agent()
