"""Load and validate QA rows, write them atomically, fingerprint and hash them.

A row is a plain dict with the schema of the shipped data: ``instruction``, ``input`` and
``output`` (strings) and ``meta`` (an object); ``id`` is optional and added when missing.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from autodp.errors import UserError

Row = dict[str, Any]
TEXT_FIELDS = ("instruction", "input", "output")
# Table formats people export QA pairs in, named up front rather than failing as bad JSON.
NOT_JSONL = (".csv", ".tsv", ".xlsx", ".xls", ".parquet")


class DataError(UserError):
    """Bad input data; the message names the file, the line and the field."""

    def __init__(self, path: str | os.PathLike, line: int | None, field: str | None, problem: str):
        where = f"{path}" + (f":{line}" if line is not None else "")
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}:{what} {problem}")
        self.path, self.line, self.field, self.problem = str(path), line, field, problem

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a Ray task, it comes back whole
        return type(self), (self.path, self.line, self.field, self.problem)


def validate_row(obj: Any, path: str | os.PathLike, line: int) -> Row:
    if not isinstance(obj, dict):
        raise DataError(path, line, None, f"expected a JSON object, got {type(obj).__name__}")
    for field in TEXT_FIELDS:
        if field not in obj:
            raise DataError(path, line, field, "missing")
        if not isinstance(obj[field], str):
            raise DataError(path, line, field, f"expected a string, got {type(obj[field]).__name__}")
    if "meta" in obj and not isinstance(obj["meta"], dict):
        raise DataError(path, line, "meta", f"expected an object, got {type(obj['meta']).__name__}")
    if "id" in obj and not isinstance(obj["id"], str):
        raise DataError(path, line, "id", f"expected a string, got {type(obj['id']).__name__}")
    row = dict(obj)
    row.setdefault("meta", {})
    row.setdefault("id", f"{Path(path).stem}_{line:06d}")
    return row


def check_jsonl(path: Path) -> None:
    """A JSONL file is there to read: the errors given before reading a line."""
    if path.is_dir():
        raise DataError(path, None, None, "is a directory; a JSONL file (one JSON object per line) is expected")
    if not path.is_file():
        raise DataError(path, None, None, "no such file")
    if path.suffix.lower() in NOT_JSONL:
        raise DataError(path, None, None, f"a {path.suffix} file; JSONL (one JSON object per line) is expected")


def parse_line(path: str | os.PathLike, lineno: int, raw: bytes, max_row_bytes: int | None) -> Row:
    """The validated row on a non-blank line; a ``DataError`` naming the line (and field) if it is bad."""
    if max_row_bytes is not None and len(raw) > max_row_bytes:
        raise DataError(path, lineno, None, f"a row of {len(raw):,} bytes, over max_row_bytes={max_row_bytes:,} "
                                            "(raise it, or set it to null for no limit)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, lineno, None, f"not valid UTF-8 (byte {e.start})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        hint = "" if text.lstrip().startswith(("{", "[")) else "; JSONL (one JSON object per line) is expected"
        raise DataError(path, lineno, None, f"bad JSON: {e.msg} at column {e.colno}{hint}") from None
    return validate_row(obj, path, lineno)


def load_rows(path: str | os.PathLike, limit: int | None = None, max_row_bytes: int | None = None) -> list[Row]:
    """Read a JSONL file, validating every row (or the first ``limit`` rows); a row longer than
    ``max_row_bytes`` (the config key of that name) is an error."""
    path = Path(path)
    check_jsonl(path)
    rows: list[Row] = []
    first_line: dict[str, int] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if limit is not None and len(rows) >= limit:
                break
            if not raw.strip():
                continue
            row = parse_line(path, lineno, raw, max_row_bytes)
            if row["id"] in first_line:
                raise DataError(path, lineno, "id", f"duplicate id {row['id']!r}, first on line {first_line[row['id']]}")
            first_line[row["id"]] = lineno
            rows.append(row)
    if not rows:
        raise DataError(path, None, None, "empty file: no rows")
    return rows


def load_spec(spec: dict[str, Any], max_row_bytes: int | None = None) -> list[Row]:
    """Rows of a spec ``{"path", "offset"?, "limit"?}`` (path may be ``pkg:...``)."""
    from autodp.resources import resolve_path

    offset, limit = spec.get("offset") or 0, spec.get("limit")
    rows = load_rows(resolve_path(spec["path"]), None if limit is None else offset + limit, max_row_bytes)
    if offset >= len(rows):
        raise DataError(spec["path"], None, "offset", f"offset {offset} leaves no rows (file has {len(rows)})")
    return rows[offset:]


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Write to a temp file beside ``path`` and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_rows(path: str | os.PathLike, rows: Iterable[Row]) -> None:
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


class RowDigest:
    """``fingerprint`` and ``content_hash`` of rows fed one at a time, for data that does not fit in
    memory. ``add_line`` takes a row as ``row_line`` wrote it, without parsing it again."""

    SUMMARY = ("rows", "fingerprint", "content_hash")

    def __init__(self) -> None:
        self._text, self._content, self.rows = hashlib.sha256(), hashlib.sha256(), 0

    def add(self, row: Row) -> None:
        self.add_line(row_line(row), row)

    def add_line(self, line: str, row: Row) -> None:
        for field in TEXT_FIELDS:
            v = row[field].encode("utf-8")
            self._text.update(len(v).to_bytes(8, "little"))
            self._text.update(v)
        v = line.encode("utf-8")
        self._content.update(len(v).to_bytes(8, "little"))
        self._content.update(v)
        self.rows += 1

    @property
    def fingerprint(self) -> str:
        return self._text.hexdigest()[:16]

    @property
    def content_hash(self) -> str:
        return self._content.hexdigest()

    def summary(self) -> dict[str, Any]:
        """Rows, fingerprint and content hash: what a manifest records of a set of rows."""
        return {k: getattr(self, k) for k in self.SUMMARY}


def row_line(row: Row) -> str:
    """A row's canonical JSON text (keys sorted): what ``content_hash`` hashes."""
    return json.dumps(row, sort_keys=True, ensure_ascii=False)


def digest(rows: Iterable[Row]) -> RowDigest:
    d = RowDigest()
    for row in rows:
        d.add(row)
    return d


def fingerprint(rows: Iterable[Row]) -> str:
    """Content hash of the rows' text fields in order (ids and meta do not count)."""
    return digest(rows).fingerprint


def content_hash(rows: Iterable[Row]) -> str:
    """sha256 of every field of every row in order. Unlike ``fingerprint`` it covers ids and
    meta too: operators pick rows by id, so rows that differ only there process differently."""
    return digest(rows).content_hash


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
