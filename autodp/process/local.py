"""Every operator in this process, on the whole list of rows: the reference engine."""
from __future__ import annotations

from autodp.data.io import Row
from autodp.ops.base import Operator, OpReport, run_op


class LocalEngine:
    def run(self, op: Operator, rows: list[Row]) -> tuple[list[Row], OpReport]:
        return run_op(op, rows)
