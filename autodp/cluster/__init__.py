"""Executors run evaluation requests: in this process (CPU default), as local subprocesses, or as
SLURM job arrays (``conf/cluster``). Every executor has ``map(fn, requests)``, which yields one
result per request as it finishes, so the search journals each before the next arrives. A new
executor is a class built from ``(cluster config, run store)`` and a conf/cluster/*.yaml naming it."""
from __future__ import annotations

from typing import Any

from hydra.utils import get_class

from autodp.cluster.jobs import JobExecutor
from autodp.cluster.local import LocalExecutor
from autodp.store import RunStore


def build_executor(cfg: Any, store: RunStore) -> LocalExecutor | JobExecutor:
    """The executor that ``cfg._target_`` names (``cfg``: the ``cluster`` config group); job logs
    and results go under ``<run dir>/jobs``."""
    return get_class(cfg._target_)(cfg, store)
