"""A deterministic, rule-based agent (no LLM): a local search over strategies.

It answers without text, straight from the history, so it serves both as a backend of its own
(agent=heuristic) and as the fallback when a model's answers stay unusable.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator

from autodp.agent.parser import Answer
from autodp.proposal import RoundFeedback, Rules, scores, tried
from autodp.strategy import Strategy, Team, strategy_space

# the order in which the paper's prompt introduces the teams
PROMPT_ORDER = (Team.CLEANING, Team.GENERATION, Team.OPTIMIZATION, Team.SELECTION)


def neighbours(s: Strategy, teams: tuple[Team, ...]) -> list[Strategy]:
    """One edit away: append a team, prepend a team, swap two adjacent teams, drop a team."""
    unused = [t for t in teams if t not in s.teams]
    out = [Strategy(s.teams + (t,)) for t in unused]
    out += [Strategy((t,) + s.teams) for t in unused]
    for i in range(len(s.teams) - 1):
        swapped = list(s.teams)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        out.append(Strategy(tuple(swapped)))
    if len(s.teams) > 1:
        out += [Strategy(s.teams[:i] + s.teams[i + 1:]) for i in range(len(s.teams))]
    return out


class HeuristicAgent:
    """Round 1: short, diverse strategies, all starting with the first available team (the paper's
    example: Cleaning; Cleaning+Generation; Cleaning+Optimization; Cleaning+Selection). Later: the
    neighbours of the two best strategies, interleaved, never one evaluated before. Stops (from
    the round rules allow it) once the best score has not improved for `patience` rounds or every
    |s_k| < epsilon; the final choice is the best strategy, or no processing when even the best
    is below epsilon (nothing beats the raw data)."""

    def __init__(self, patience: int = 2, epsilon: float = 0.005):
        self.patience, self.epsilon = patience, epsilon

    def answer(self, round: int, history: list[RoundFeedback], rules: Rules) -> Answer:
        scored = scores(history)
        ranked = sorted(scored, key=lambda s: -scored[s])  # stable: ties go to the earlier one
        candidates = list(itertools.islice(self._candidates(ranked, tried(history), rules), rules.max_strategies))
        small = bool(scored) and all(abs(v) < self.epsilon for v in scored.values())
        # an exhausted space ends the search even before min_rounds: there is nothing left to try
        if not candidates or (rules.can_stop and (small or self._stalled(history))):
            if not ranked or scored[ranked[0]] < self.epsilon:
                return Answer([], "no_processing", Strategy(()))
            return Answer([ranked[0]], "best_team", ranked[0])
        return Answer(candidates, "continue", None)

    def _stalled(self, history: list[RoundFeedback]) -> bool:
        """True when the best score so far is no higher than it was `patience` rounds ago."""
        best, running = float("-inf"), []
        for r in history:
            best = max([best] + [f.score for f in r.results if f.score is not None])
            running.append(best)
        return len(running) > self.patience and running[-1] <= running[-1 - self.patience]

    def _candidates(self, ranked: list[Strategy], done: set[Strategy], rules: Rules) -> Iterator[Strategy]:
        teams = tuple(t for t in PROMPT_ORDER if t in rules.teams)
        if ranked:
            # alternate between the two best so that one lucky score does not own the round
            pairs = itertools.zip_longest(*(neighbours(s, teams) for s in ranked[:2]))
            first = [s for pair in pairs for s in pair if s is not None]
            later = [n for s in ranked[2:] for n in neighbours(s, teams)]
        else:
            first = [Strategy(teams[:1])] + [Strategy((teams[0], t)) for t in teams[1:]]
            later = []
        seen = set(done)
        # then anything not tried (the space lists short strategies first): the search never stalls
        for s in itertools.chain(first, later, strategy_space(teams)):
            if s not in seen and not s.is_none and len(s.teams) <= rules.max_teams:
                seen.add(s)
                yield s
