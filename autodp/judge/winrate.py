"""The paper's Tables 3, 4, 6 and 7 from judgments: Our Wins / Ties / Our Losses as shares of the
judged questions, with a bootstrap 95% interval over questions on the win rate, the judge's
position consistency and the count of unparsed verdicts beside them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from autodp.judge.pairwise import UNPARSED, Judgment


@dataclass(frozen=True)
class WinRate:
    questions: int
    judged: int     # questions with both verdicts parsed: the shares' denominator
    wins: float
    ties: float
    losses: float
    win_low: float  # bootstrap 95% interval of `wins`
    win_high: float
    consistency: float  # share of judged questions whose two orders agree
    unparsed: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def win_rate(judgments: Sequence[Judgment], *, boot: int = 2000, seed: int = 0) -> WinRate:
    judged = [j for j in judgments if j.outcome != UNPARSED]
    n = len(judged)
    if n == 0:
        nan = float("nan")
        return WinRate(len(judgments), 0, nan, nan, nan, nan, nan, nan, len(judgments))
    won = np.array([j.outcome == "win" for j in judged], dtype=float)
    share = {k: sum(j.outcome == k for j in judged) / n for k in ("win", "tie", "loss")}
    means = won[np.random.default_rng(seed).integers(0, n, size=(boot, n))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return WinRate(len(judgments), n, share["win"], share["tie"], share["loss"], float(low), float(high),
                   sum(bool(j.consistent) for j in judged) / n, len(judgments) - n)


def table(pairs: Sequence[tuple[str, str, WinRate]]) -> str:
    """The paper's table, one line per (ours, theirs, win rate)."""
    lines = ["| ours | theirs | Our Wins (95% CI) | Ties | Our Losses | judged | unparsed | position consistency |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {w.wins:.3f} ({w.win_low:.3f}-{w.win_high:.3f}) | {w.ties:.3f} | {w.losses:.3f} | "
              f"{w.judged} of {w.questions} | {w.unparsed} | {w.consistency:.3f} |" for a, b, w in pairs]
    return "\n".join(lines) + "\n"
