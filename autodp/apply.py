"""Apply a strategy to the whole training set and export it (the end of Figure 1's loop).

A search evaluates strategies on the DPS sample; what the user wants is the full training set
processed by the winner. ``export`` runs the strategy on the request's training rows (reusing
CRM entries when the request has a cache) and writes, into one folder:

* ``train.jsonl`` (process=local), or ``train/part-NNNNN.jsonl`` of at most ``part_rows`` rows
  each (process=ray, whose steps stream from disk to disk: no process holds all rows);
* ``hf/``: the same rows as a Hugging Face ``datasets`` folder (``meta`` as JSON text, since
  generated rows carry fields the others lack);
* ``manifest.json``: the strategy, every operator's configured parameters, rows in and out of
  every step, and the input's and output's fingerprints. Counts and settings only, never text.

Each file or folder is written beside its final place and renamed into it, so an interrupted
export leaves the previous one whole.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from datasets import Dataset

from autodp.accel.crm import Crm
from autodp.data.io import TEXT_FIELDS, Row, RowDigest, atomic_write, row_line, write_rows
from autodp.data.io import digest as digest_rows
from autodp.evaluate.evaluator import context, process
from autodp.evaluate.request import EvalRequest
from autodp.process import StreamingEngine, build_engine
from autodp.strategy import Strategy

log = logging.getLogger(__name__)


def _save_hf(files: list[Path], folder: Path) -> None:
    def rows() -> Iterator[Row]:
        for f in files:
            with open(f, encoding="utf-8") as lines:
                for line in lines:
                    r = json.loads(line)
                    yield {**{k: r[k] for k in ("id", *TEXT_FIELDS)}, "meta": json.dumps(r.get("meta", {}), ensure_ascii=False)}

    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:  # built from the files a row at a time, through datasets' own Arrow cache
        Dataset.from_generator(rows, cache_dir=str(tmp / "cache")).save_to_disk(str(tmp / "data"))
        _replace(tmp / "data", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace(new: Path, folder: Path) -> None:
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _write_parts(rows: Iterator[Row], folder: Path, part_rows: int) -> tuple[list[Path], RowDigest]:
    """``rows`` as JSONL parts of ``part_rows`` rows, and their digest, one row in memory at a time."""
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    digest, f = RowDigest(), None
    try:
        for i, row in enumerate(rows):
            if i % part_rows == 0:
                f and f.close()
                f = open(tmp / f"part-{i // part_rows:05d}.jsonl", "w", encoding="utf-8")
            line = row_line(row)
            digest.add_line(line, row)
            f.write(line + "\n")
        f and f.close()
        _replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(folder.glob("part-*.jsonl")), digest


def manifest(req: EvalRequest, inp: dict[str, Any], out: dict[str, Any], reports: list[Any], seconds: float
             ) -> dict[str, Any]:
    """``inp`` and ``out``: ``RowDigest.summary()`` of the input and the processed rows."""
    strategy = Strategy.parse(req.strategy)
    return {
        "strategy": strategy.key, "label": strategy.label, "seed": req.seed,
        "operators": {t.value: req.teams[t.value] for t in strategy.teams},
        "input": {**req.train, **inp},
        "steps": [r.as_dict() for r in reports],
        "output": out,
        "screening_model": req.screener, "seconds": round(seconds, 2),
    }


def export(req: EvalRequest, out_dir: str | Path, max_row_bytes: int | None = None) -> dict[str, Any]:
    """Process ``req.train`` with ``req.strategy`` and write the rows, hf/ and manifest.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    engine = build_engine(req.process)
    if isinstance(engine, StreamingEngine):
        work = Path(req.crm_dir) / "steps" if req.crm_dir else out / ".steps"  # with CRM on, other runs reuse them
        inp, rows, reports = engine.stream(Strategy.parse(req.strategy), req.train, req.teams, context(req), work,
                                           max_row_bytes)
        files, digest = _write_parts(rows, out / "train", engine.part_rows)
        (out / "train.jsonl").unlink(missing_ok=True)  # an earlier local export's: the parts replace it
    else:
        rows, processed, reports = process(req, Crm(req.crm_dir) if req.crm_dir else None)  # reuse what the search processed
        inp = digest_rows(rows).summary()
        write_rows(out / "train.jsonl", processed)
        files, digest = [out / "train.jsonl"], digest_rows(processed)
    _save_hf(files, out / "hf")
    m = manifest(req, inp, digest.summary(), reports, time.perf_counter() - t0)
    with atomic_write(out / "manifest.json") as f:
        json.dump(m, f, indent=1, ensure_ascii=False, default=str)
    if isinstance(engine, StreamingEngine) and not req.crm_dir:
        shutil.rmtree(out / ".steps", ignore_errors=True)  # kept only to resume an unfinished export
    log.info("applied %s to %d rows -> %d rows in %.1f s; exported to %s", m["strategy"], inp["rows"],
             digest.rows, m["seconds"], out)
    return m
