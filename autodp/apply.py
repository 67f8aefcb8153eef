"""Apply a strategy to the whole training set and export it (the end of Figure 1's loop).

A search evaluates strategies on the DPS sample; what the user wants is the full training set
processed by the winner. ``export`` runs the strategy on the request's training rows (reusing
CRM entries when the request has a cache) and writes, into one folder:

* ``train.jsonl``: the processed rows;
* ``hf/``: the same rows as a Hugging Face ``datasets`` folder (``meta`` as JSON text, since
  generated rows carry fields the others lack);
* ``manifest.json``: the strategy, every operator's configured parameters, rows in and out of
  every step, and the input's and output's fingerprints. Counts and settings only, never text.

Each file is written beside its final place and renamed into it, so an interrupted export
leaves the previous one whole.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from datasets import Dataset

from autodp.accel.crm import Crm
from autodp.data.io import Row, atomic_write, content_hash, fingerprint, write_rows
from autodp.evaluate.evaluator import process
from autodp.evaluate.request import EvalRequest
from autodp.strategy import Strategy

log = logging.getLogger(__name__)


def _save_hf(rows: list[Row], folder: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        Dataset.from_list([{**r, "meta": json.dumps(r.get("meta", {}), ensure_ascii=False)} for r in rows]
                          ).save_to_disk(str(tmp / "data"))
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        (tmp / "data").rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def manifest(req: EvalRequest, rows: list[Row], processed: list[Row], reports: list[Any],
             seconds: float) -> dict[str, Any]:
    strategy = Strategy.parse(req.strategy)
    return {
        "strategy": strategy.key, "label": strategy.label, "seed": req.seed,
        "operators": {t.value: req.teams[t.value] for t in strategy.teams},
        "input": {**req.train, "rows": len(rows), "fingerprint": fingerprint(rows),
                  "content_hash": content_hash(rows)},
        "steps": [r.as_dict() for r in reports],
        "output": {"rows": len(processed), "fingerprint": fingerprint(processed),
                   "content_hash": content_hash(processed)},
        "screening_model": req.screener, "seconds": round(seconds, 2),
    }


def export(req: EvalRequest, out_dir: str | Path) -> dict[str, Any]:
    """Process ``req.train`` with ``req.strategy`` and write train.jsonl, hf/ and manifest.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows, processed, reports = process(req, Crm(req.crm_dir) if req.crm_dir else None)  # reuse what the search processed
    write_rows(out / "train.jsonl", processed)
    _save_hf(processed, out / "hf")
    m = manifest(req, rows, processed, reports, time.perf_counter() - t0)
    with atomic_write(out / "manifest.json") as f:
        json.dump(m, f, indent=1, ensure_ascii=False, default=str)
    log.info("applied %s to %d rows -> %d rows in %.1f s; exported to %s", m["strategy"], len(rows),
             len(processed), m["seconds"], out)
    return m
