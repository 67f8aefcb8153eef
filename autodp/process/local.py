"""Every operator in this process, on the whole list of rows: the reference engine."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from autodp.accel.dps import serial_map
from autodp.accel.embed import Encoder, build_encoder
from autodp.data.io import Row
from autodp.ops.base import Operator, OpReport, run_op


class LocalEngine:
    map = staticmethod(serial_map)

    def run(self, op: Operator, rows: list[Row]) -> tuple[list[Row], OpReport]:
        return run_op(op, rows)

    @contextmanager
    def encoder(self, cfg: Mapping[str, Any]) -> Iterator[Encoder]:
        yield build_encoder(cfg)
