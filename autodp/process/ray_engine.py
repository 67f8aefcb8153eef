"""``process=ray``: operators as Ray Data batch maps over the rows, in blocks of ``batch_size`` spread
over the cluster's CPUs. A row-local operator (a mapper or a filter, ``Operator.row_local``) runs
whole on each block. An operator with row features (``Operator.row_features``: near-duplicate
removal, whose MinHash signatures are the costly part) has its features computed on the blocks and
its selection made here, over all of them. The others (the LLM teams, LESS selection) run in this
process on all rows. Rows travel as their JSON lines, so what comes back is exactly what went in,
order included.

``address: null`` starts a Ray instance on this machine (``num_cpus`` of it); ``auto`` or a
``ray://`` address joins a running cluster (``ray start --head`` and workers).
"""
from __future__ import annotations

import json
import logging
import pickle
import time
from typing import Any

import numpy as np

from autodp.data.io import Row
from autodp.ops.base import Operator, OpReport, report, run_op
from autodp.resources import cpu_threads

log = logging.getLogger(__name__)


class _Rows:
    """What a Ray task runs on one block of a row-local operator: the operator on its rows."""

    def __init__(self, op: Operator):
        self.op = op

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.op([json.loads(x) for x in batch["row"]])
        return {"row": np.array([json.dumps(r, ensure_ascii=False) for r in out], dtype=object)}


class _Features:
    """What a Ray task runs on one block of an operator with row features: its features."""

    def __init__(self, op: Operator):
        self.op = op

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        features = self.op.features([json.loads(x) for x in batch["row"]])
        return {"feature": np.array([pickle.dumps(f) for f in features], dtype=object)}


class RayEngine:
    def __init__(self, address: str | None = None, num_cpus: int | None = None, batch_size: int = 4096,
                 min_rows: int = 0, progress: bool = True):
        self.address, self.num_cpus, self.batch_size = address, num_cpus, batch_size
        self.min_rows, self.progress = min_rows, progress

    def _connect(self) -> Any:
        import ray  # imported only when this engine is asked for

        if not ray.is_initialized():
            # a Ray started here takes the CPUs this process was given (a SLURM job's), not the node's
            ray.init(address=self.address, num_cpus=None if self.address else cpu_threads(self.num_cpus),
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
            log.info("ray: %s, %s CPUs", self.address or "a local instance", ray.cluster_resources().get("CPU"))
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the rows come back in the local engine's order
        ctx.enable_progress_bars = self.progress
        return ray

    def run(self, op: Operator, rows: list[Row]) -> tuple[list[Row], OpReport]:
        if len(rows) < max(self.min_rows, 1) or not (op.row_local or op.row_features):
            return run_op(op, rows)
        ray = self._connect()
        t0 = time.perf_counter()
        blocks = ray.data.from_items([{"row": json.dumps(r, ensure_ascii=False)} for r in rows])
        if op.row_local:
            done = blocks.map_batches(_Rows(op), batch_size=self.batch_size, batch_format="numpy").take_all()
            out = [json.loads(x["row"]) for x in done]
        else:
            done = blocks.map_batches(_Features(op), batch_size=self.batch_size, batch_format="numpy").take_all()
            out = op.select(rows, [pickle.loads(x["feature"]) for x in done])
        return out, report(op, rows, out, time.perf_counter() - t0)
