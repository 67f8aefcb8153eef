"""A strategy as a Ray Data pipeline over data of any size, from a JSONL file to processed parts
on disk (``process=ray``: ``task=apply`` and the search's export; the search's own evaluations,
on DPS samples, go through ``RayEngine.run``). No process holds all rows:

* **read**: the file in line-aligned byte ranges (``shards.py``), one Ray task each, every row
  validated with its real line number; duplicate ids found from 63-bit id keys.
* **steps**: one per operator. A row-local operator is a batch map on Ray tasks. Near-duplicate removal
  (``Operator.row_features``) computes signatures and LSH buckets on the blocks, groups the
  buckets on the cluster, links the rows that share one into groups (connected components, here,
  from row numbers alone), and decides with ``op.keep`` on whole groups on the workers: a row is
  only compared with rows of its group, so it keeps exactly the rows the local operator keeps. Any other operator (the LLM teams, LESS) runs in this process on all rows, as the local
  engine runs it, but on the engine's ``runner`` (an LLM operator generates on Ray actors). Where
  PTS screens its team, F scores the rows first on a pool of Ray actors, one copy of F each.
* **checkpoints**: every step is written as Parquet parts named by their first row's index, into
  ``<work>/<key>/`` under a CRM key (``accel.crm.step_keys``: the input's content, then every
  operator and its parameters). A finished step is never run again: a killed export resumes from
  its last finished operator, and another strategy with the same prefix starts from it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from autodp.accel.crm import step_keys
from autodp.accel.pts import PTS_TEAMS, Run, Screener
from autodp.data.io import TEXT_FIELDS, DataError, Row, RowDigest, check_jsonl, file_digest, row_line
from autodp.ops.base import Operator, OpReport
from autodp.ops.teams import build_team, log_step, run_step
from autodp.process import shards as sh
from autodp.resources import resolve_path
from autodp.strategy import Strategy

log = logging.getLogger(__name__)
REPORT = "report.json"


def _cause(e: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """The ``kind`` error a Ray task raised (``raise_original_map_exception``), without Ray's wrapper."""
    while e is not None and not (isinstance(e, kind) and not type(e).__module__.startswith("ray.")):
        e = getattr(e, "cause", None) or e.__cause__
    return e


def id_key(row_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(row_id.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def _batch(idx: Any, lines: list[str], changed: Any = None) -> dict[str, np.ndarray]:
    n = len(lines)
    out = {"idx": np.asarray(idx, dtype=np.int64).reshape(n), "row": np.array(lines, dtype=object).reshape(n)}
    return out if changed is None else {**out, "changed": np.asarray(changed, dtype=bool).reshape(n)}


class _Parse:
    """One shard: its rows in ``window`` (row indices [first, end)), validated."""

    def __init__(self, window: tuple[int, int | None], max_row_bytes: int | None):
        self.window, self.max_row_bytes = window, max_row_bytes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        idx, lines, keys, linenos = [], [], [], []
        for i in range(len(batch["path"])):
            shard = sh.Shard(str(batch["path"][i]), *(int(batch[k][i]) for k in ("start", "end", "line", "row")))
            for n, lineno, row in sh.parse(shard, self.window, self.max_row_bytes):
                idx.append(n), lines.append(row_line(row)), keys.append(id_key(row["id"])), linenos.append(lineno)
        return {**_batch(idx, lines), "key": np.array(keys, np.int64), "line": np.array(linenos, np.int64)}


def _count(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    counts = [sh.count(sh.Shard(str(p), int(a), int(b))) for p, a, b in zip(batch["path"], batch["start"], batch["end"])]
    return {"lines": np.array([c[0] for c in counts]), "rows": np.array([c[1] for c in counts])}


def apply_op(batch: dict[str, np.ndarray], op: Operator) -> dict[str, np.ndarray]:
    """A row-local operator on one batch; ``changed``: its text differs from the row that came in."""
    rows = [json.loads(x) for x in batch["row"]]
    out = op(rows)
    where = {r["id"]: i for i, r in enumerate(rows)}
    pos = [where[r["id"]] for r in out]  # row-local: every output row is an input row, maybe rewritten
    changed = [any(r[f] != rows[p][f] for f in TEXT_FIELDS) for r, p in zip(out, pos)]
    return _batch(batch["idx"][pos], [row_line(r) for r in out], changed)


def _buckets(batch: dict[str, np.ndarray], op: Operator, parts: int) -> dict[str, np.ndarray]:
    """Every row's buckets (``op.buckets`` of its features), each with the partition it is grouped in."""
    keys = [op.buckets(f) for f in op.features([json.loads(x) for x in batch["row"]])]
    bucket = np.array([k for ks in keys for k in ks], np.int64)
    return {"part": bucket % parts, "bucket": bucket,
            "idx": np.repeat(batch["idx"], [len(ks) for ks in keys]).astype(np.int64)}


def _shared(part: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The (bucket, row) pairs of one partition's buckets that more than one row has (a row that
    shares none is kept and drops none)."""
    _, where, count = np.unique(part["bucket"], return_inverse=True, return_counts=True)
    shared = count[where] > 1
    return {"bucket": part["bucket"][shared], "idx": part["idx"][shared]}


def groups(bucket: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows that share a bucket (sorted), and a label per row: rows linked through shared
    buckets, however indirectly, have the same one (connected components)."""
    rows, node = np.unique(idx, return_inverse=True)
    order = np.lexsort((node, bucket))
    b, n = bucket[order], node[order]
    link = b[1:] == b[:-1]  # consecutive rows of one bucket
    graph = coo_matrix((np.ones(int(link.sum()), np.int8), (n[:-1][link], n[1:][link])), shape=(len(rows),) * 2)
    return rows, connected_components(graph, directed=False)[1]


def _columns(ds: Any, *names: str) -> list[np.ndarray]:
    """Integer columns of a (small) dataset, here."""
    batches = list(ds.iter_batches(batch_format="numpy"))
    return [np.concatenate([b[n] for b in batches] or [np.zeros(0, np.int64)]) for n in names]


def _features(batch: dict[str, np.ndarray], op: Operator, rows: np.ndarray, part: np.ndarray) -> dict[str, np.ndarray]:
    """The features of the batch's ``rows`` (sorted), each with the ``part`` its group is decided in."""
    pos = np.minimum(np.searchsorted(rows, batch["idx"]), len(rows) - 1)
    mask = rows[pos] == batch["idx"]
    feats = op.features([json.loads(x) for x in batch["row"][mask]]) if mask.any() else []
    return {"idx": batch["idx"][mask], "part": part[pos[mask]],
            "feature": np.array([pickle.dumps(f) for f in feats], dtype=object)}


def _decide(part: dict[str, np.ndarray], op: Operator) -> dict[str, np.ndarray]:
    """``op.keep`` on whole groups, their rows in order: a row is only ever compared with rows that
    share a bucket with it, all in its group, so this keeps what one pass over every row keeps."""
    order = np.argsort(part["idx"], kind="stable")
    keep = np.array(op.keep([pickle.loads(part["feature"][i]) for i in order]), bool)
    return {"idx": part["idx"][order][~keep]}


def _drop(batch: dict[str, np.ndarray], dropped: np.ndarray) -> dict[str, np.ndarray]:
    """The batch without the ``dropped`` rows (sorted, not empty). A binary search per row: np.isin
    sorts ``dropped`` again for every batch, 1 s a batch at 1.1M dropped rows (40 min at 10M rows)."""
    pos = np.minimum(np.searchsorted(dropped, batch["idx"]), len(dropped) - 1)
    keep = dropped[pos] != batch["idx"]
    return {"idx": batch["idx"][keep], "row": batch["row"][keep]}


def _write(batch: dict[str, np.ndarray], folder: str) -> dict[str, np.ndarray]:
    """A block as one Parquet part named by its first row's index, so that parts sort in row order."""
    n = len(batch["idx"])
    if n:
        table = pa.table({k: pa.array(list(v) if k == "row" else v) for k, v in batch.items() if k != "changed"})
        pq.write_table(table, f"{folder}/part-{int(batch['idx'][0]):012d}.parquet")
    return {"rows": np.array([n]), "changed": np.array([int(np.sum(batch.get("changed", 0)))])}


def _read(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    table = pa.concat_tables([pq.read_table(str(p), columns=["idx", "row"]) for p in batch["part"]])
    return {"idx": table.column("idx").to_numpy(), "row": np.array(table.column("row").to_pylist(), dtype=object)}


class _Screen:
    """One actor of F's pool: a copy of F (its encoder loaded there), its verdict per row. F reads
    a step's rows as they stream from its Parquet parts, so its pool is Ray Data's (map_batches
    over a class); ray_pool.py's pools work on items already in the applying process."""

    def __init__(self, screener: Screener, batch_size: int):
        self.screener, self.batch_size = screener, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A part's verdicts, ``batch_size`` rows at a time (the part is one task: ``Pipeline.each_part``)."""
        rows = [json.loads(x) for x in batch["row"]]
        noisy = [self.screener.predict(rows[i:i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]
        return {"id": np.array([r["id"] for r in rows], dtype=object),
                "noisy": np.concatenate(noisy).astype(bool) if noisy else np.zeros(0, bool)}


class Flags:
    """F's verdicts, computed on the cluster, as a screener for run_with_pts."""

    def __init__(self, noisy: dict[str, bool]):
        self.noisy = noisy

    def predict(self, rows: list[Row]) -> np.ndarray:
        return np.array([self.noisy[r["id"]] for r in rows], dtype=bool)


def parts(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("part-*.parquet"))


def rows_of(folder: Path, columns: tuple[str, ...] = ("row",)) -> Iterator[dict[str, Any]]:
    """The step's rows in order, a part at a time (only one part is in memory)."""
    for part in parts(folder):
        yield from pq.read_table(part, columns=list(columns)).to_pylist()


class Pipeline:
    """A strategy's steps on a Ray cluster, checkpointed under ``work``."""

    def __init__(self, ray: Any, work: Path, batch_size: int, workers: int, shard_bytes: int, runner: Run):
        self.ray, self.work, self.batch_size = ray, Path(work), batch_size
        self.workers, self.shard_bytes, self.runner = workers, shard_bytes, runner

    # ---- checkpoints
    def _done(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.work / key / REPORT).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def _commit(self, key: str, ds: Any, report: Callable[[int, int], OpReport] | None = None) -> dict[str, Any]:
        """Write ``ds`` as the step ``key``: into a temp folder, with its row counts and the
        ``report(rows, changed)`` of its operator, renamed into place when whole."""
        tmp = self.work / f".{key}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir(parents=True)
        try:
            stats = self.each_part(ds, _write, fn_args=(str(tmp),)).to_pandas()
            info: dict[str, Any] = {"rows": int(stats["rows"].sum()), "changed": int(stats["changed"].sum())}
            if report is not None:
                rep = report(info["rows"], info["changed"]).as_dict()
                info["report"] = {k: v for k, v in rep.items() if k != "cached"}
            (tmp / REPORT).write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
            try:
                tmp.rename(self.work / key)
            except OSError:
                if self._done(key) is None:  # else another run finished the same step first: keep theirs
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return info

    def dataset(self, key: str) -> Any:
        """The step's rows, a Parquet part per block; map over it with ``self.each_part``."""
        files = parts(self.work / key)
        if not files:
            raise DataError(str(self.work / key), None, None, "the strategy removed every row")
        # one task per part, in order (Ray's own file listing is not used: on 2.60 it races on an
        # optional fsspec import when files are listed from several threads)
        return self.ray.data.from_items([{"part": f} for f in files], override_num_blocks=len(files)) \
            .map_batches(_read, batch_size=1, batch_format="numpy")

    @staticmethod
    def each_part(ds: Any, fn: Any, **kw: Any) -> Any:
        """``fn`` on whole blocks of a ``dataset``, one part per Ray task. Ray fuses a map with the read
        of the parts and bundles inputs for the largest batch size of the chain: a batch size in rows,
        counted in parts, would put every part in one task (one CPU, and at 10M rows past Ray Data's
        30-minute no-progress timeout)."""
        return ds.map_batches(fn, batch_size=None, batch_format="numpy", **kw)

    # ---- read
    def read(self, spec: Mapping[str, Any], max_row_bytes: int | None) -> tuple[str, dict[str, Any]]:
        """The input as step ``key``; its info holds the input's rows, fingerprint and content hash."""
        path = resolve_path(spec["path"])
        check_jsonl(path)
        offset, limit = spec.get("offset") or 0, spec.get("limit")
        window = (offset, None if limit is None else offset + limit)
        content = spec.get("sha256") or file_digest(path)
        key = hashlib.sha256(json.dumps(["read", content, window, max_row_bytes]).encode()).hexdigest()
        info = self._done(key)
        if info is None:
            t0 = time.perf_counter()
            shards = sh.split(path, self.shard_bytes)
            items = self.ray.data.from_items([asdict(s) for s in shards], override_num_blocks=len(shards))
            counts = items.map_batches(_count, batch_size=1, batch_format="numpy").to_pandas()
            shards = sh.numbered(shards, list(zip(counts["lines"], counts["rows"])))
            total = int(counts["rows"].sum())
            if not total:
                raise DataError(path, None, None, "empty file: no rows")
            if offset >= total:
                raise DataError(spec["path"], None, "offset", f"offset {offset} leaves no rows (file has {total})")
            ds = self.ray.data.from_items([asdict(s) for s in shards], override_num_blocks=len(shards)) \
                .map_batches(_Parse(window, max_row_bytes), batch_size=1, batch_format="numpy")
            tmp_key = f"{key}.ids"
            try:
                self._commit(tmp_key, ds)
            except Exception as e:  # a bad row: the DataError a reader task raised, not Ray's wrapping
                raise _cause(e, DataError) or e

            self._check_ids(path, self.work / tmp_key)
            digest = RowDigest()
            for r in rows_of(self.work / tmp_key):
                digest.add_line(r["row"], json.loads(r["row"]))
            info = {**digest.summary(), "seconds": round(time.perf_counter() - t0, 2), "shards": len(shards)}
            (self.work / tmp_key / REPORT).write_text(json.dumps(info), encoding="utf-8")
            (self.work / tmp_key).rename(self.work / key)
            log.info("read %d rows of %s in %d shards, %.1f s", info["rows"], path, len(shards), info["seconds"])
        return key, info

    def _check_ids(self, path: Path, folder: Path) -> None:
        """The error ``load_rows`` gives for a repeated id, without holding the ids in memory."""
        keys, lines = (np.concatenate(c) for c in zip(*((t.column("key").to_numpy(), t.column("line").to_numpy())
                                                         for t in (pq.read_table(p, columns=["key", "line"]) for p in parts(folder)))))
        order = np.argsort(keys, kind="stable")
        same = np.nonzero(keys[order][1:] == keys[order][:-1])[0]
        if not len(same):
            return
        suspects = set(lines[order][np.concatenate([same, same + 1])].tolist())  # a 63-bit key may collide
        found: dict[str, int] = {}
        for r in rows_of(folder, ("row", "line")):
            if r["line"] in suspects:
                row_id = json.loads(r["row"])["id"]
                if row_id in found:
                    raise DataError(path, r["line"], "id", f"duplicate id {row_id!r}, first on line {found[row_id]}")
                found[row_id] = r["line"]

    # ---- operators
    def step(self, op: Operator, key: str, src: str, screener: Any) -> OpReport:
        done = self._done(key)
        if done is not None:
            log.info("%s: finished before (%s), not run again", op.name, key[:12])
            return OpReport(**done["report"], cached=True)
        rows_in = self._done(src)["rows"]
        t0 = time.perf_counter()
        ds = self.dataset(src)
        if screener is not None and op.team in PTS_TEAMS:
            return self._in_process(op, key, ds, self.screen(ds, screener))  # F decides which rows it changes
        if op.row_local:
            out = self.each_part(ds, apply_op, fn_args=(op,))
        elif op.row_features:
            out = self.dedup(op, ds, rows_in)
        else:
            return self._in_process(op, key, ds, screener)
        info = self._commit(key, out, lambda rows, changed: OpReport(
            op.name, op.team.value, rows_in, rows, changed, round(time.perf_counter() - t0, 4), {}))
        return OpReport(**info["report"])

    def dedup(self, op: Operator, ds: Any, rows: int) -> Any:
        t0 = time.perf_counter()
        # Buckets go to partitions by key (one Ray shuffle), and each partition finds its shared buckets
        # with numpy at once: 2.7 s for 100k rows' 2.5M buckets on 2 CPUs, where Ray's per-key groupby
        # (a Python call per bucket, or its count() aggregation) took 62-68 s. ~400k rows per partition.
        parts = max(self.workers, rows // 400_000)
        buckets = self.each_part(ds, _buckets, fn_args=(op, parts))
        bucket, idx = _columns(buckets.groupby("part", num_partitions=parts).map_groups(_shared, batch_format="numpy"),
                               "bucket", "idx")
        if not len(idx):
            return ds
        sharing, group = groups(bucket, idx)
        t1 = time.perf_counter()
        # Whole groups go to partitions, each decided on a worker (~200k rows' signatures there): only
        # row numbers reach this process, however many rows share a bucket.
        parts = max(self.workers, len(sharing) // 200_000)
        feats = self.each_part(ds, _features, fn_args=(op, sharing, group % parts))
        (dropped,) = _columns(feats.groupby("part", num_partitions=parts).map_groups(
            _decide, fn_args=(op,), batch_format="numpy"), "idx")
        log.info("%s: %d rows share an LSH bucket, in %d groups, %d dropped; seconds: buckets grouped %.1f, "
                 "groups decided in %d partitions %.1f", op.name, len(sharing), group.max() + 1, len(dropped),
                 t1 - t0, parts, time.perf_counter() - t1)
        if not len(dropped):
            return ds
        return self.each_part(ds, _drop, fn_kwargs={"dropped": np.sort(dropped)})

    def screen(self, ds: Any, screener: Screener) -> Flags:
        """F's verdict on every row of ``ds``, from a pool of Ray actors."""
        t0 = time.perf_counter()
        got = self.each_part(ds, _Screen, fn_constructor_args=(screener, self.batch_size),
                             concurrency=self.workers).to_pandas()
        log.info("F: %d of %d rows flagged, on %d Ray actors in %.1f s", int(got["noisy"].sum()), len(got),
                 self.workers, time.perf_counter() - t0)
        return Flags(dict(zip(got["id"], got["noisy"].astype(bool))))

    def _in_process(self, op: Operator, key: str, ds: Any, screener: Screener | None) -> OpReport:
        log.info("%s runs from this process, on all rows", op.name)
        rows = [json.loads(b) for batch in ds.iter_batches(batch_format="numpy", batch_size=self.batch_size)
                for b in batch["row"]]
        out, rep = run_step(op, rows, screener, self.runner)
        lines = [row_line(r) for r in out]
        ds = self.ray.data.from_items([{"idx": i, "row": line} for i, line in enumerate(lines)])
        self._commit(key, ds, lambda rows, changed: rep)
        return rep

    # ---- a strategy
    def run(self, strategy: Strategy, spec: Mapping[str, Any], teams_cfg: Mapping[str, Any],
            context: dict[str, Any], max_row_bytes: int | None = None) -> tuple[dict[str, Any], Path, list[OpReport]]:
        """(the input's rows, fingerprint and content hash; the last step's folder; a report per operator)."""
        chains = [build_team(t, teams_cfg, context) for t in strategy.teams]
        key, inp = self.read(spec, max_row_bytes)
        screener = context.get("screener")
        reports = []
        for team_keys, ops in zip(step_keys(inp["content_hash"], list(zip(strategy.teams, chains)), screener), chains):
            for op, next_key in zip(ops, team_keys):
                rep = self.step(op, next_key, key, screener)
                log_step(rep)
                reports.append(rep)
                key = next_key
        return {k: inp[k] for k in RowDigest.SUMMARY}, self.work / key, reports
