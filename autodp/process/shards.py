"""A JSONL file as byte ranges that start and end at line starts, so that each range is read,
parsed and validated by its own task, with the file's real line numbers in any error. Rows are
numbered in file order (``idx``), which is also the order every engine keeps."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from autodp.data.io import Row, parse_line


@dataclass(frozen=True)
class Shard:
    path: str
    start: int  # byte offset of its first line
    end: int  # byte offset just past its last line
    line: int = 1  # number of its first line in the file
    row: int = 0  # index of its first row among the file's rows (blank lines are no rows)


def split(path: Path, shard_bytes: int) -> list[Shard]:
    """Ranges of about ``shard_bytes``, each ending at a line end (one seek and one line read per
    range: the file is not read through here)."""
    size, bounds = os.path.getsize(path), [0]
    with open(path, "rb") as f:
        while bounds[-1] < size:
            f.seek(min(bounds[-1] + shard_bytes, size) - 1)
            f.readline()  # to the end of the line that holds the cut
            bounds.append(min(f.tell(), size))
    return [Shard(str(path), a, b) for a, b in zip(bounds, bounds[1:])]


def lines(shard: Shard) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of every line in the range."""
    with open(shard.path, "rb") as f:
        f.seek(shard.start)
        for lineno, raw in enumerate(iter(lambda: f.readline() if f.tell() < shard.end else b"", b""),
                                     start=shard.line):
            yield lineno, raw


def count(shard: Shard) -> tuple[int, int]:
    """(lines, rows) of the range; rows are its non-blank lines."""
    n_lines = n_rows = 0
    for _, raw in lines(shard):
        n_lines += 1
        n_rows += bool(raw.strip())
    return n_lines, n_rows


def numbered(shards: list[Shard], counts: list[tuple[int, int]]) -> list[Shard]:
    """The shards with the numbers of their first line and first row, from every shard's counts."""
    out, line, row = [], 1, 0
    for s, (n_lines, n_rows) in zip(shards, counts):
        out.append(Shard(s.path, s.start, s.end, line, row))
        line, row = line + n_lines, row + n_rows
    return out


def parse(shard: Shard, window: tuple[int, int | None], max_row_bytes: int | None) -> Iterator[tuple[int, int, Row]]:
    """(row index, line number, validated row) of the range's rows whose index is in ``window``
    ([first, end), end None: to the end), with the errors and messages of ``load_rows``."""
    first, end = window
    idx = shard.row
    for lineno, raw in lines(shard):
        if not raw.strip():
            continue
        if end is not None and idx >= end:
            return
        if idx >= first:
            yield idx, lineno, parse_line(shard.path, lineno, raw, max_row_bytes)
        idx += 1
