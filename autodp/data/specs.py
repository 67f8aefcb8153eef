"""From a dataset config to the file specs an evaluation reads: train, val, target, pool."""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from autodp.data.io import DataError, load_rows, load_spec, write_rows
from autodp.resources import resolve_path

Spec = dict[str, Any]


class DataSpecs(NamedTuple):
    train: Spec   # the rows strategies process and fine-tune on
    val: Spec     # the rows R(f) scores on
    target: Spec  # validation rows reserved as target examples (LESS); never scored
    pool: Spec    # the raw training pool a scratch base model is pre-warmed on


def data_specs(cfg: Any, split_dir: Path) -> DataSpecs:
    """Validated specs. With ``dataset.val: null`` the last ``val_rows`` rows of ``train`` are
    held out (written to ``split_dir``, so the split is part of the run's record). The first
    ``eval.target_rows`` validation rows are the target examples, the rest are scored."""
    d, e = cfg.dataset, cfg.eval
    train = {"path": d.train, "offset": 0, "limit": d.train_limit}
    val_path = d.val
    if val_path is None:
        rows = load_rows(resolve_path(d.train))
        if not d.val_rows or d.val_rows >= len(rows):
            raise DataError(d.train, None, "val_rows", f"need 0 < val_rows < {len(rows)} when dataset.val is null")
        write_rows(split_dir / "train.jsonl", rows[: -d.val_rows])
        write_rows(split_dir / "val.jsonl", rows[-d.val_rows:])
        train["path"], val_path = str(split_dir / "train.jsonl"), str(split_dir / "val.jsonl")
    specs = DataSpecs(train, {"path": val_path, "offset": e.target_rows, "limit": e.val_limit},
                      {"path": val_path, "offset": 0, "limit": e.target_rows}, dict(train, limit=None))
    for spec in (specs.train, specs.val):  # fail on bad input before any agent call or training
        load_spec(spec)
    return specs
