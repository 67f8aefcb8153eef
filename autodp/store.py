"""The run store: everything a run did, as append-only JSONL under its output dir.

A crash can at worst tear the last line of a file. Readers skip a torn last line; the first
append of a process to a journal repairs it first: the torn tail is cut off (and kept beside the
file as ``<name>.torn``), so the next record starts on a line of its own and a resumed run redoes
only the step that was in flight, however often it is resumed. Only appending repairs, so a
process that merely reads a run (``autodp.report``, a test polling a live run) never writes.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from autodp.errors import UserError

log = logging.getLogger(__name__)
LOCK = ".lock"


class RunDirBusy(UserError):
    """Another process holds the run dir."""


def _complete(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def repair_tail(path: Path) -> int:
    """Cut a torn last line off ``path`` and append what was cut to ``<path>.torn``; a complete
    record that only lacks its newline gets one. Returns the bytes cut."""
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return 0
        start = data.rfind(b"\n") + 1
        tail = data[start:]
        if _complete(tail):
            f.write(b"\n")
            return 0
        with open(path.with_name(path.name + ".torn"), "ab") as torn:
            torn.write(tail + b"\n")
            torn.flush()
            os.fsync(torn.fileno())
        f.truncate(start)
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s: cut a torn last line of %d bytes (the run was killed while writing it); kept in %s.torn",
                path, len(tail), path.name)
    return len(tail)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a journal, without writing: a torn last line is skipped, a bad line
    before it is an error naming the line."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if _complete(line):
            out.append(json.loads(line))
        elif i == len(lines) - 1:  # no newline after it: the write was cut short
            log.warning("%s: skipping a torn last line (the run was killed while writing it)", path)
        else:
            raise ValueError(f"{path}:{i + 1}: corrupt record in the run store")
    return out


def reusable(records: Iterable[dict[str, Any]], retry_failed: bool = True) -> dict[str, dict[str, Any]]:
    """Journaled evaluations a resumed run replays, by signature (the newest record of each).
    Failed ones are left out unless ``retry_failed`` is off: their cause may have been fixed."""
    return {r["signature"]: r for r in records if r["status"] == "ok" or not retry_failed}


class RunStore:
    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._repaired: set[Path] = set()

    def path(self, name: str) -> Path:
        return self.dir / name

    def append(self, name: str, record: dict[str, Any]) -> None:
        p = self.path(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p not in self._repaired and p.exists():
            repair_tail(p)
        self._repaired.add(p)
        with open(p, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.path(name))


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run dir for one process: a second launch into it (the same second, or a resume
    of a run still going) fails at once instead of interleaving the journals."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RunDirBusy(f"{run_dir} is in use by another autodp process ({f.read().strip() or 'pid unknown'}); "
                             "wait for it to end, or choose another hydra.run.dir") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
