"""Answers on disk, one small JSON file per request, so that a re-run costs nothing.

The key covers everything that determines an answer: the model, the prompt, the schema, the
sampling parameters and the seed. Writes are atomic (temp file + rename), so parallel workers
sharing the cache never read half a file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from autodp.llm.base import Completion, Request


def request_key(model_id: str, req: Request) -> str:
    payload = [model_id, req.prompt, req.schema, req.sampling.as_dict(), req.seed]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class DiskCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return Completion(data["text"], data["finish_reason"])

    def put(self, key: str, completion: Completion) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"text": completion.text, "finish_reason": completion.finish_reason}, f, ensure_ascii=False)
        os.replace(tmp, path)
