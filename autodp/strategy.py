"""A data-processing strategy: an ordered tuple of distinct teams (paper section 3.2).

This module is pure vocabulary: it holds no data and imports nothing that does, so the agent
may use it without breaking the privacy boundary.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import Enum

from autodp.errors import UserError


class Team(str, Enum):
    CLEANING = "cleaning"
    OPTIMIZATION = "optimization"
    GENERATION = "generation"
    SELECTION = "selection"

    @property
    def label(self) -> str:
        """The name the paper's prompts use, e.g. 'Data Cleaning Team'."""
        return f"Data {self.value.capitalize()} Team"


NO_PROCESSING_LABEL = "No Processing Required for Original Data"
MAX_TEAMS = len(Team)


class StrategyError(UserError):
    """A strategy string or team list that is not a valid strategy."""


def _team_from_text(text: str) -> Team:
    t = text.strip().strip("*").strip().lower()
    for prefix in ("data ",):
        if t.startswith(prefix):
            t = t[len(prefix):]
    for suffix in (" team",):
        if t.endswith(suffix):
            t = t[: -len(suffix)]
    t = t.strip()
    for team in Team:
        if t == team.value:
            return team
    raise StrategyError(f"unknown team {text.strip()!r}; known: {', '.join(x.label for x in Team)}")


@dataclass(frozen=True, order=True)
class Strategy:
    """Ordered, distinct teams; the empty tuple is "no processing"."""

    teams: tuple[Team, ...] = ()

    def __post_init__(self) -> None:
        teams = tuple(Team(t) for t in self.teams)
        object.__setattr__(self, "teams", teams)
        if len(set(teams)) != len(teams):
            raise StrategyError(f"duplicate team in {[t.label for t in teams]}")
        if len(teams) > MAX_TEAMS:
            raise StrategyError(f"at most {MAX_TEAMS} teams, got {len(teams)}")

    @property
    def key(self) -> str:
        """Canonical, file-name-safe key: 'cleaning>selection', or 'none'."""
        return ">".join(t.value for t in self.teams) if self.teams else "none"

    @property
    def label(self) -> str:
        """The paper's wording: 'Data Cleaning Team, Data Selection Team'."""
        return ", ".join(t.label for t in self.teams) if self.teams else NO_PROCESSING_LABEL

    @property
    def is_none(self) -> bool:
        return not self.teams

    def prefixes(self) -> list["Strategy"]:
        """Proper prefixes, longest first (for cache-and-reuse, eq. 7)."""
        return [Strategy(self.teams[:i]) for i in range(len(self.teams) - 1, 0, -1)]

    @classmethod
    def parse(cls, text: str) -> "Strategy":
        """Parse a key ('cleaning>selection'), a label ('Data Cleaning Team, ...') or 'none'."""
        s = text.strip()
        if s.lower() in ("none", "", NO_PROCESSING_LABEL.lower()):
            return cls(())
        sep = ">" if ">" in s else ("→" if "→" in s else ",")
        parts = [p for p in (x.strip() for x in s.split(sep)) if p]
        return cls(tuple(_team_from_text(p) for p in parts))

    def __str__(self) -> str:
        return self.key


def strategy_space(teams: tuple[Team, ...] | list[Team] = tuple(Team)) -> list[Strategy]:
    """'No processing' first, then every ordering of every non-empty subset (64 for 4 teams)."""
    space = [Strategy(())]
    for n in range(1, len(teams) + 1):
        space.extend(Strategy(p) for p in itertools.permutations(teams, n))
    return space


def all_process(teams: tuple[Team, ...] | list[Team] = tuple(Team)) -> Strategy:
    """Every one of ``teams`` in the paper's order, cleaning > optimization > generation >
    selection: the All-process baseline (section 4.1.2)."""
    return Strategy(tuple(t for t in Team if t in teams))
