"""``process=ray``: operators on a Ray cluster through Ray Data, giving the rows process=local gives.

Two entry points share the steps of ``ray_stream.py``: ``run(op, rows)`` for rows already in
memory (an evaluation's DPS sample), and ``stream(...)`` for a whole strategy over a file of any
size (the export), with every step checkpointed on disk. A row-local operator (a mapper or a
filter) runs on the blocks; near-duplicate removal computes its signatures and LSH buckets on the
blocks and groups the buckets on the cluster. An LLM operator runs in this process and generates on
a pool of Ray actors (``llm.actors``: ray_llm.py); F, where PTS screens a team, scores the rows of
an export on a pool of Ray actors too. LESS (``Operator.row_scores``) warms up in this process and
scores slices of the rows on a pool of Ray actors (``scores.actors``), each with a copy of the
warmed-up state; DPS embeds the rows on such a pool (``encoder``) and herds each of its cells in a
Ray task (``map``).

``address: null`` starts a Ray instance on this machine (``num_cpus`` of it); ``auto`` or a
``host:port`` joins a running cluster (``ray start --head`` and workers: slurm/ray-apply.sbatch).
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch

from autodp.accel.embed import Encoder, build_encoder
from autodp.data.io import Row, row_line
from autodp.ops.base import Operator, OpReport, report, run_op
from autodp.ops.llm_op import LLMOperator
from autodp.process.ray_llm import pooled
from autodp.process.ray_pool import PooledEncoder, actor_pool
from autodp.process.ray_stream import Pipeline, apply_op, rows_of
from autodp.resources import cpu_threads
from autodp.strategy import Strategy

log = logging.getLogger(__name__)


class RayEngine:
    def __init__(self, address: str | None = None, num_cpus: int | None = None, batch_size: int = 4096,
                 min_rows: int = 0, shard_bytes: int = 64 << 20, part_rows: int = 1_000_000,
                 shuffle: str = "sort_shuffle_pull_based", progress: bool = True, llm: Mapping[str, Any] | None = None,
                 scores: Mapping[str, Any] | None = None):
        self.address, self.num_cpus, self.batch_size, self.shuffle = address, num_cpus, batch_size, shuffle
        self.min_rows, self.shard_bytes, self.part_rows, self.progress = min_rows, shard_bytes, part_rows, progress
        self.llm, self.scores = dict(llm or {"actors": 0}), dict(scores or {"actors": 0})

    def _connect(self) -> Any:
        import ray  # imported only when this engine is asked for

        if not ray.is_initialized():
            # a Ray started here takes the CPUs this process was given (a SLURM job's), not the node's
            # address "local": a new instance, never one that `ray start` left recorded in /tmp/ray
            ray.init(address=self.address or "local", num_cpus=None if self.address else cpu_threads(self.num_cpus),
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
            log.info("ray: %s, %s CPUs", self.address or "a local instance", ray.cluster_resources().get("CPU"))
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the rows come back in the local engine's order
        ctx.enable_progress_bars = self.progress
        ctx.shuffle_strategy = self.shuffle  # how LSH buckets are grouped across the cluster
        ctx.raise_original_map_exception = True  # a bad row's DataError, not Ray's UserCodeException
        return ray

    def pipeline(self, work: Path) -> Pipeline:
        ray = self._connect()
        return Pipeline(ray, work, self.batch_size, max(1, int(ray.cluster_resources().get("CPU", 1))), self.shard_bytes,
                        self.run)

    @contextmanager
    def _on_pool(self, op: LLMOperator) -> Iterator[None]:
        """``op`` generating on a pool of Ray actors while it runs."""
        before = op.llm
        with pooled(self._connect(), before, **self.llm) as client:
            op.llm = client
            try:
                yield
            finally:
                op.llm = before

    def pooled_scores(self, op: Operator, rows: list[Row]) -> torch.Tensor:
        """``op.scorer()``, fitted here, scoring a slice of ``rows`` on each actor of a pool."""
        t0 = time.perf_counter()
        scorer = op.scorer()
        t1 = time.perf_counter()
        with actor_pool(self._connect(), lambda: scorer, **self.scores) as pool:
            out = torch.cat(pool.sliced(rows))
        log.info("%s: fitted here in %.1f s, %d rows scored on %d Ray actors in %.1f s", op.name, t1 - t0, len(rows),
                 len(pool.actors), time.perf_counter() - t1)
        return out

    @contextmanager
    def encoder(self, cfg: Mapping[str, Any]) -> Iterator[Encoder]:
        """The encoder of ``cfg`` (autodp.accel.embed) on a pool of Ray actors (``scores``)."""
        with actor_pool(self._connect(), partial(build_encoder, dict(cfg)), **self.scores) as pool:
            yield PooledEncoder(pool)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """``fn`` of each item as a Ray task of one CPU; the results in order."""
        ray = self._connect()
        call, fn_ref = ray.remote(num_cpus=1)(_call), ray.put(fn)
        return ray.get([call.remote(fn_ref, x) for x in items])

    def run(self, op: Operator, rows: list[Row]) -> tuple[list[Row], OpReport]:
        if op.row_scores and self.scores["actors"] and rows:
            t0 = time.perf_counter()
            out = op.choose(rows, lambda rs: self.pooled_scores(op, rs))
            return out, report(op, rows, out, time.perf_counter() - t0)
        if isinstance(op, LLMOperator) and self.llm["actors"] and isinstance(op.llm, Mapping) and rows:
            with self._on_pool(op):
                return run_op(op, rows)
        if len(rows) < max(self.min_rows, 1) or not (op.row_local or op.row_features):
            return run_op(op, rows)
        pipe = self.pipeline(Path("."))
        t0 = time.perf_counter()
        ds = pipe.ray.data.from_items([{"idx": i, "row": row_line(r)} for i, r in enumerate(rows)])
        if op.row_local:
            ds = ds.map_batches(apply_op, fn_args=(op,), batch_size=self.batch_size, batch_format="numpy")
        else:
            ds = pipe.dedup(op, ds, len(rows))
        out = [json.loads(x["row"]) for x in ds.select_columns(["row"]).take_all()]
        return out, report(op, rows, out, time.perf_counter() - t0)

    def stream(self, strategy: Strategy, spec: Mapping[str, Any], teams_cfg: Mapping[str, Any],
               context: dict[str, Any], work: Path, max_row_bytes: int | None = None
               ) -> tuple[dict[str, Any], Iterator[Row], list[OpReport]]:
        """The strategy over the rows of ``spec``, checkpointed under ``work`` (see ray_stream.py)."""
        inp, last, reports = self.pipeline(work).run(strategy, spec, teams_cfg, context, max_row_bytes)
        return inp, (json.loads(r["row"]) for r in rows_of(last)), reports


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)
