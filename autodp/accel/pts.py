"""Processing-target selection (paper 3.3.3): the expensive teams process only the rows F flags.

Before an operator of an LLM team runs, the screening model F splits the current rows into
noisy (to process) and clean (used for training as they are). The operator still sees every
row, so a fill's few-shot examples and a generator's shots and near-duplicate check use the
whole dataset, but it may change only the flagged rows: its ``only_ids`` are set to them.
Generating new pairs changes no row, so PTS skips nothing there (``GenerateQAFromShots``).

The Selection team's gradients are the paper's other example of costly processing: under PTS
the clean rows are kept as they are and the selector chooses among the flagged rows only
(``select_with_pts``), so LESS computes no gradient for a clean row.

The report adds to the operator's own the LLM work F took away (rows an operator would have
processed but F calls clean, after its ``fraction`` and ``max_rows``) and the time that saved,
estimated as those rows x the measured seconds per processed row, beside F's own time.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from autodp.data.io import Row
from autodp.ops.base import Operator, OpReport, run_op
from autodp.ops.llm_op import LLMOperator
from autodp.strategy import Team

log = logging.getLogger(__name__)
# The teams the paper runs PTS for: their operators call an LLM or take gradients per row.
# Cleaning filters are cheap, and dedup must see the whole dataset to be right.
PTS_TEAMS = frozenset({Team.OPTIMIZATION, Team.GENERATION, Team.SELECTION})


class Screener(Protocol):
    def predict(self, rows: list[Row]) -> np.ndarray:
        """True where a row needs processing."""


@dataclass
class PtsReport(OpReport):
    rows_processed: int  # LLM calls the operator made (on rows F flags)
    rows_skipped: int  # rows it would have processed without PTS, called clean by F
    seconds_per_row: float | None  # None when no row was processed (nothing to measure)
    seconds_saved_est: float | None
    screen_seconds: float = 0.0  # F's own time


def split_by_f(rows: list[Row], model: Screener) -> tuple[list[str], list[str]]:
    """(noisy ids, clean ids), each in row order."""
    noisy = model.predict(rows)
    return ([r["id"] for r, n in zip(rows, noisy) if n], [r["id"] for r, n in zip(rows, noisy) if not n])


def _work(op: LLMOperator, rows: list[Row]) -> int:
    """Rows the operator would process: its targets, under its fraction and max_rows (for a
    generator, the rows it draws shots from, which PTS leaves alone: only the difference counts)."""
    return op.work(sum(op.targets(rows)))


Run = Callable[[Operator, list[Row]], tuple[list[Row], OpReport]]


def run_with_pts(op: Operator, rows: list[Row], model: Screener, run: Run = run_op) -> tuple[list[Row], PtsReport]:
    """Run ``op`` on ``rows`` (with ``run``: an engine's) so that it processes only the rows F
    flags: an LLM operator with its ``only_ids`` set to them, a selector on them alone. Logs
    counts and times, never text."""
    t0 = time.perf_counter()
    noisy_ids, _ = split_by_f(rows, model)
    screen_seconds = round(time.perf_counter() - t0, 4)
    if isinstance(op, LLMOperator):
        without = _work(op, rows)
        op.only_ids = noisy_ids
        skipped = without - _work(op, rows)
        out, rep = run(op, rows)
        processed = op.last_stats["processed"]  # LLM calls made
    elif op.team is Team.SELECTION:
        out, rep = select_with_pts(op, rows, set(noisy_ids), run)
        processed, skipped = len(noisy_ids), len(rows) - len(noisy_ids)
    else:
        raise TypeError(f"PTS restricts LLM and selection operators only; {op.name!r} is neither")
    per_row = rep.seconds / processed if processed else None
    report = PtsReport(**vars(rep), rows_processed=processed, rows_skipped=skipped,
                       seconds_per_row=None if per_row is None else round(per_row, 6),
                       seconds_saved_est=None if per_row is None else round(skipped * per_row, 4),
                       screen_seconds=screen_seconds)
    saved = "n/a" if report.seconds_saved_est is None else f"~{report.seconds_saved_est:.2f} s"
    log.info("PTS %-20s %5d rows, %d flagged: %d processed, %d skipped as clean, %s saved (F took %.2f s)",
             report.op, report.rows_in, len(noisy_ids), processed, skipped, saved, screen_seconds)
    return out, report


def select_with_pts(op: Operator, rows: list[Row], noisy: set[str], run: Run = run_op) -> tuple[list[Row], OpReport]:
    """Clean rows pass; ``op`` selects among the noisy ones. Row order is kept."""
    chosen, rep = run(op, [r for r in rows if r["id"] in noisy])
    kept = {r["id"] for r in chosen}
    out = [r for r in rows if r["id"] not in noisy or r["id"] in kept]
    return out, replace(rep, rows_in=len(rows), rows_out=len(out))
