"""From a dataset config to the file specs an evaluation reads: train, val, target, pool; and the
held-out test split, which nothing in the search reads."""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from autodp.data.io import DataError, Row, file_digest, load_rows, load_spec, write_rows
from autodp.resources import resolve_path

Spec = dict[str, Any]


class DataSpecs(NamedTuple):
    train: Spec   # the rows strategies process and fine-tune on
    val: Spec     # the rows R(f) scores on
    target: Spec  # validation rows reserved as target examples (LESS); never scored
    pool: Spec    # the raw training pool a scratch base model is pre-warmed on


class Carved(NamedTuple):
    train: list[Row]
    test: list[Row]
    val: list[Row]


def question_key(row: Row) -> str:
    """A row's question with all whitespace removed: two questions that differ only in spacing
    or line breaks are the same question for the split-disjointness checks."""
    return "".join(row["instruction"].split())


def _carved(d: Any) -> Carved | None:
    """``dataset.train`` cut as train | test | val when a split is carved from its tail: the last
    ``val_rows`` rows are validation (``val: null``), the ``test_rows`` rows before them the test
    split (``test: null``). None when nothing is carved. Old run configs have no test keys."""
    n_val = 0 if d["val"] is not None else d["val_rows"] or 0
    n_test = 0 if d.get("test") is not None else d.get("test_rows") or 0
    if d["val"] is None and n_val <= 0:
        raise DataError(d["train"], None, "val_rows", "need val_rows > 0 when dataset.val is null")
    if d.get("test") is not None and d.get("test_rows"):
        raise DataError(d["train"], None, "test_rows", "set dataset.test or dataset.test_rows, not both")
    if n_test < 0:
        raise DataError(d["train"], None, "test_rows", f"must be >= 0, got {n_test}")
    if not n_val + n_test:
        return None
    rows = load_rows(resolve_path(d["train"]))
    cut = len(rows) - n_val - n_test
    if cut <= 0:
        raise DataError(d["train"], None, "val_rows" if n_val else "test_rows",
                        f"val_rows ({n_val}) + test_rows ({n_test}) leave no training rows of {len(rows)}")
    return Carved(rows[:cut], rows[cut:cut + n_test], rows[len(rows) - n_val:])


def train_rows(cfg: Any) -> list[Row]:
    """The rows a search may process: ``dataset.train`` less the rows carved out for validation
    and test, then its first ``train_limit``. Everything fitted on data (F, DPS) fits on these."""
    d = cfg["dataset"]
    carved = _carved(d)
    if carved is None:
        return load_rows(resolve_path(d["train"]), d["train_limit"])
    return carved.train[: d["train_limit"]]


def data_specs(cfg: Any, split_dir: Path, check_train: bool = True) -> DataSpecs:
    """Validated specs. With ``dataset.val: null`` the last ``val_rows`` rows of ``train`` are
    held out (written to ``split_dir``, so the split is part of the run's record); with
    ``dataset.test: null`` the ``test_rows`` before them are dropped from training (only
    ``test_spec`` writes them out). The first ``eval.target_rows`` validation rows are the
    target examples, the rest are scored."""
    d, e = cfg.dataset, cfg.eval
    train = {"path": d.train, "offset": 0, "limit": d.train_limit}
    val_path = d.val
    carved = _carved(d)
    if carved is not None:
        write_rows(split_dir / "train.jsonl", carved.train)
        train["path"] = str(split_dir / "train.jsonl")
    if val_path is None:
        write_rows(split_dir / "val.jsonl", carved.val)
        val_path = str(split_dir / "val.jsonl")
    specs = DataSpecs(train, {"path": val_path, "offset": e.target_rows, "limit": e.val_limit},
                      {"path": val_path, "offset": 0, "limit": e.target_rows}, dict(train, limit=None))
    # Fail on bad input before any agent call or training. The pool is every training row, so
    # rows past train_limit that the pre-warm and the full-size export read are checked too,
    # unless an engine that streams reads them (it checks each row as it reads it).
    for spec in (specs.train, specs.val, specs.target, specs.pool) if check_train else (specs.val, specs.target):
        load_spec(spec, cfg.get("max_row_bytes"))
    return DataSpecs(*(pinned(spec) for spec in specs))


def pinned(spec: Spec) -> Spec:
    """``spec`` with the sha256 of its file: an evaluation's signature covers the content it
    reads, so a fixed or edited input file is evaluated anew, not replayed from the journal."""
    return dict(spec, sha256=file_digest(resolve_path(spec["path"])))


def heldout_test_spec(cfg: Any, split_dir: Path) -> Spec | None:
    """The held-out test split (``dataset.test``, or the ``test_rows`` carved from ``train``,
    written to ``split_dir``), None when the config names none. Only the end-of-run
    confirmation may call this: the search never reads the test split. Raises DataError when a
    test question (whitespace aside) is also a training or validation question."""
    d = cfg["dataset"]
    carved = _carved(d)
    if d.get("test") is not None:
        spec = {"path": d["test"], "offset": 0, "limit": None}
    elif carved is not None and carved.test:
        write_rows(split_dir / "test.jsonl", carved.test)
        spec = {"path": str(split_dir / "test.jsonl"), "offset": 0, "limit": None}
    else:
        return None
    test = load_spec(spec, cfg.get("max_row_bytes"))
    spec = pinned(spec)
    pool = carved.train if carved is not None else load_rows(resolve_path(d["train"]))
    val = carved.val if d["val"] is None else load_rows(resolve_path(d["val"]))
    for name, rows in (("train", pool), ("val", val)):
        seen = {question_key(r) for r in rows}
        for i, row in enumerate(test):
            if question_key(row) in seen:
                raise DataError(spec["path"], i + 1, "instruction",
                                f"test row {row['id']!r} repeats a {name} question: the splits must be disjoint")
    return spec
