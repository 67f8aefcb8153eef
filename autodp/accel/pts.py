"""Processing-target selection (paper 3.3.3): expensive teams process only the rows F flags.

Before an operator of an LLM team runs, the screening model F splits the current rows into
noisy (to process) and clean (used for training as they are). ``apply_with_pts`` hands the
operator only the noisy rows and merges its output back:

* a row the operator returns under a flagged row's id replaces that row, in place;
* a flagged row the operator does not return is dropped (filters and selection);
* a row under a new id (generation) is appended after the others, in the operator's order;
* clean rows pass through untouched, in their original positions.

A generation operator therefore fills or rewrites only flagged rows; if it wants few-shot
examples from the whole dataset it must get them at construction, since it only ever sees
the flagged rows. The report adds to the operator's own (rows in and out, rows changed,
seconds) the rows skipped and the time that saved, estimated as rows skipped x the measured
seconds per processed row, beside the time F itself took.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Iterable, Protocol

import numpy as np

from autodp.data.io import Row
from autodp.ops.base import Operator, OpReport, run_op
from autodp.strategy import Team

log = logging.getLogger(__name__)
# The teams the paper runs PTS for: their operators call an LLM per row. Cleaning filters are
# cheap, and dedup or selection must see the whole dataset to be right.
PTS_TEAMS = frozenset({Team.OPTIMIZATION, Team.GENERATION})


class Screener(Protocol):
    def predict(self, rows: list[Row]) -> np.ndarray:
        """True where a row needs processing."""


@dataclass
class PtsReport(OpReport):
    rows_processed: int  # flagged by F and passed to the operator
    rows_skipped: int  # called clean by F, passed through
    seconds_per_row: float | None  # None when no row was processed (nothing to measure)
    seconds_saved_est: float | None
    screen_seconds: float = 0.0  # F's own time (0.0 when the ids came from elsewhere)


def split_by_f(rows: list[Row], model: Screener) -> tuple[list[str], list[str]]:
    """(noisy ids, clean ids), each in row order."""
    noisy = model.predict(rows)
    return ([r["id"] for r, n in zip(rows, noisy) if n], [r["id"] for r, n in zip(rows, noisy) if not n])


def merge(rows: list[Row], targets: set[str], processed: list[Row]) -> list[Row]:
    """Put the operator's output for the ``targets`` rows back among the untouched rows."""
    known = {r["id"] for r in rows}
    clash = sorted({r["id"] for r in processed} & (known - targets))
    if clash:
        raise ValueError(f"operator returned {len(clash)} row(s) under ids of rows it was not given "
                         f"(first: {clash[0]!r}); under PTS it may only return its own or new ids")
    by_id = {r["id"]: r for r in processed if r["id"] in targets}
    out = []
    for r in rows:
        if r["id"] not in targets:
            out.append(r)
        elif r["id"] in by_id:
            out.append(by_id[r["id"]])
    return out + [r for r in processed if r["id"] not in known]


def apply_with_pts(op: Operator, rows: list[Row], noisy_ids: Iterable[str]) -> tuple[list[Row], PtsReport]:
    """Run ``op`` on the rows whose id is in ``noisy_ids`` only; the rest pass through."""
    targets = set(noisy_ids)
    missing = targets - {r["id"] for r in rows}
    if missing:
        raise ValueError(f"{len(missing)} noisy id(s) are not among the rows (first: {sorted(missing)[0]!r})")
    flagged = [r for r in rows if r["id"] in targets]
    processed, rep = run_op(op, flagged)
    out = merge(rows, targets, processed)
    per_row = rep.seconds / len(flagged) if flagged else None
    skipped = len(rows) - len(flagged)
    report = PtsReport(rep.op, rep.team, len(rows), len(out), rep.rows_changed, rep.seconds,
                       rows_processed=len(flagged), rows_skipped=skipped,
                       seconds_per_row=None if per_row is None else round(per_row, 6),
                       seconds_saved_est=None if per_row is None else round(skipped * per_row, 4))
    return out, report


def run_with_pts(op: Operator, rows: list[Row], model: Screener) -> tuple[list[Row], PtsReport]:
    """Screen ``rows`` with F, then ``apply_with_pts``; logs counts and times, never text."""
    t0 = time.perf_counter()
    noisy_ids, _ = split_by_f(rows, model)
    screen_seconds = round(time.perf_counter() - t0, 4)
    out, report = apply_with_pts(op, rows, noisy_ids)
    report = replace(report, screen_seconds=screen_seconds)
    saved = "n/a" if report.seconds_saved_est is None else f"~{report.seconds_saved_est:.2f} s"
    log.info("PTS %-20s %5d rows: %d processed, %d skipped as clean, %s saved (F took %.2f s)",
             report.op, report.rows_in, report.rows_processed, report.rows_skipped, saved, screen_seconds)
    return out, report
