"""The search (Figure 1): the loop every method shares, and the seam a method plugs into.

Methods live in autodp/search/methods/, one file each, chosen by conf/search/<method>.yaml.
"""
from autodp.search.loop import Executor, Search, SearchCallback, SearchOutcome
from autodp.search.proposer import Context, Proposer

__all__ = ["Context", "Executor", "Proposer", "Search", "SearchCallback", "SearchOutcome"]
