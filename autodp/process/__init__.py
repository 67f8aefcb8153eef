"""Engines run an operator on rows (``process.engine``, conf/process): in this process (``local``,
the default and the reference), or on a Ray cluster (``ray``). Every engine has
``run(op, rows) -> (rows, OpReport)`` and gives the rows the local engine gives; a new engine is a
class built from its config and a conf/process/*.yaml naming it in ``_target_``."""
from __future__ import annotations

from typing import Any, Mapping, Protocol

from hydra.utils import get_class

from autodp.data.io import Row
from autodp.ops.base import Operator, OpReport


class Engine(Protocol):
    def run(self, op: Operator, rows: list[Row]) -> tuple[list[Row], OpReport]: ...


def build_engine(cfg: Mapping[str, Any] | None) -> Engine:
    """The engine ``cfg["_target_"]`` names (``cfg``: the ``process`` config); None: local."""
    if not cfg:
        from autodp.process.local import LocalEngine

        return LocalEngine()
    params = {k: v for k, v in cfg.items() if k != "_target_"}
    return get_class(cfg["_target_"])(**params)
