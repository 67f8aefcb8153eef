"""Engines run an operator on rows (``process.engine``, conf/process): in this process (``local``,
the default and the reference), or on a Ray cluster (``ray``). Every engine has
``run(op, rows) -> (rows, OpReport)`` and gives the rows the local engine gives, an ``encoder``
for DPS's embeddings and a ``map`` for its cells; a new engine is a class built from its config
and a conf/process/*.yaml naming it in ``_target_``. An engine that also ``stream``s runs a whole
strategy from a file without holding its rows (the export)."""
from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, runtime_checkable

from hydra.utils import get_class

from autodp.accel.embed import Encoder
from autodp.data.io import Row
from autodp.ops.base import Operator, OpReport
from autodp.strategy import Strategy


class Engine(Protocol):
    def run(self, op: Operator, rows: list[Row]) -> tuple[list[Row], OpReport]: ...

    def encoder(self, cfg: Mapping[str, Any]) -> AbstractContextManager[Encoder]:
        """The encoder of ``cfg`` (autodp.accel.embed), for DPS: here, or on the engine's workers."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """``[fn(item) for item in items]``: here, or each on the engine's workers (DPS's cells)."""


@runtime_checkable
class StreamingEngine(Protocol):
    part_rows: int  # rows per part of the exported files

    def stream(self, strategy: Strategy, spec: Mapping[str, Any], teams_cfg: Mapping[str, Any],
               context: dict[str, Any], work: Path, max_row_bytes: int | None = None
               ) -> tuple[dict[str, Any], Iterator[Row], list[OpReport]]:
        """(the input's rows, fingerprint and content hash; the processed rows, read lazily in
        order; a report per operator), with every step checkpointed under ``work``."""


def build_engine(cfg: Mapping[str, Any] | None) -> Engine:
    """The engine ``cfg["_target_"]`` names (``cfg``: the ``process`` config); None: local."""
    if not cfg:
        from autodp.process.local import LocalEngine

        return LocalEngine()
    params = {k: v for k, v in cfg.items() if k != "_target_"}
    return get_class(cfg["_target_"])(**params)
