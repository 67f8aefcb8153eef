"""``process.engine=ray``: row-local operators (mappers and filters, ``Operator.row_local``) run as
Ray Data batch maps over the rows, in blocks of ``batch_size`` spread over the cluster's CPUs; the
others (near-duplicate removal, the LLM teams, selection) still run in this process on all rows.
Rows travel as their JSON lines, so what comes back is exactly what went in, order included.

``address: null`` starts a Ray instance on this machine (``num_cpus`` of it); ``auto`` or a
``ray://`` address joins a running cluster (``ray start --head`` and workers).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

from autodp.data.io import TEXT_FIELDS, Row
from autodp.ops.base import Operator, OpReport, run_op

log = logging.getLogger(__name__)


class _Shard:
    """What a Ray task runs on one block: the operator on its rows, and which rows it changed."""

    def __init__(self, op: Operator):
        self.op = op

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [json.loads(x) for x in batch["row"]]
        before = {r["id"]: tuple(r[f] for f in TEXT_FIELDS) for r in rows}
        out = self.op(rows)
        changed = [r["id"] in before and before[r["id"]] != tuple(r[f] for f in TEXT_FIELDS) for r in out]
        return {"row": np.array([json.dumps(r, ensure_ascii=False) for r in out], dtype=object),
                "changed": np.array(changed, dtype=bool)}


class RayEngine:
    def __init__(self, address: str | None = None, num_cpus: int | None = None, batch_size: int = 4096,
                 min_rows: int = 0, progress: bool = True):
        self.address, self.num_cpus, self.batch_size = address, num_cpus, batch_size
        self.min_rows, self.progress = min_rows, progress

    def _connect(self) -> Any:
        import ray  # imported only when this engine is asked for

        if not ray.is_initialized():
            ray.init(address=self.address, num_cpus=None if self.address else self.num_cpus,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
            log.info("ray: %s, %s CPUs", self.address or "a local instance", ray.cluster_resources().get("CPU"))
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the rows come back in the local engine's order
        ctx.enable_progress_bars = self.progress
        return ray

    def run(self, op: Operator, rows: list[Row]) -> tuple[list[Row], OpReport]:
        if not op.row_local or len(rows) < max(self.min_rows, 1):
            return run_op(op, rows)
        ray = self._connect()
        t0 = time.perf_counter()
        ds = ray.data.from_items([{"row": json.dumps(r, ensure_ascii=False)} for r in rows])
        out = ds.map_batches(_Shard(op), batch_size=self.batch_size, batch_format="numpy").take_all()
        kept = [json.loads(x["row"]) for x in out]
        return kept, OpReport(op.name, op.team.value, len(rows), len(kept), sum(bool(x["changed"]) for x in out),
                              round(time.perf_counter() - t0, 4), {})
