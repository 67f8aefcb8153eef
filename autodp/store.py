"""The run store: everything a run did, as append-only JSONL under its output dir.

A crash can at worst tear the last line of a file; readers skip that line, so a resumed run
redoes only the step that was in flight.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class RunStore:
    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.dir / name

    def append(self, name: str, record: dict[str, Any]) -> None:
        p = self.path(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self, name: str) -> list[dict[str, Any]]:
        p = self.path(name)
        if not p.exists():
            return []
        lines = p.read_text(encoding="utf-8").splitlines()
        out = []
        for i, line in enumerate(lines):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if i != len(lines) - 1:
                    raise ValueError(f"{p}:{i + 1}: corrupt record in the run store") from None
                log.warning("%s: skipping a torn last line (the run was killed while writing it)", p)
        return out
