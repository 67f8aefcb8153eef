"""Executors run evaluation requests: in this process (CPU default), as local subprocesses, or as
SLURM job arrays (``conf/cluster``). Every executor has ``map(fn, requests)``, which yields one
result per request as it finishes, so the search journals each before the next arrives."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from autodp.cluster.local import LocalExecutor
from autodp.cluster.jobs import JobExecutor
from autodp.store import RunStore


def build_executor(cfg: Any, store: RunStore) -> LocalExecutor | JobExecutor:
    """``cfg``: the ``cluster`` config group; job logs and results go under ``<run dir>/jobs``."""
    if cfg.kind == "local":
        return LocalExecutor()
    if cfg.kind in ("submitit_local", "slurm"):
        return JobExecutor(cfg, store, Path(cfg.folder or store.path("jobs")))
    raise ValueError(f"cluster.kind={cfg.kind!r}: expected local, submitit_local or slurm (conf/cluster)")
