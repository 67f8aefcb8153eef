"""Cache-and-reuse (paper 3.3.4): processed datasets of strategy prefixes, and scores, on disk.

A strategy T1>...>Tn that starts with a prefix processed before runs only its suffix on the
stored result (eq. 7-8); an evaluation whose processed data and settings were scored before
does not fine-tune again. Everything is keyed by content, so runs, and SLURM jobs that share
``cache.dir``, reuse each other's work::

    <dir>/datasets/<key[:2]>/<key>/rows.jsonl   the processed rows of one prefix
                                   meta.json    its op reports, row count, sha256 of rows.jsonl
    <dir>/scores/<key[:2]>/<key>.json           the metrics of one fine-tune and evaluation

The key of prefix T1..Ti chains the key of T1..Ti-1 with Ti's operators and their parameters
(which include the LLM config and seeds) and, where PTS screens Ti, the screening model's digest;
the chain starts from the input rows' full content and FORMAT. A parameter that names a data
file (``{"path": ...}``, e.g. LESS's target examples) adds the file's digest.

Concurrency: an entry is built in a temp folder beside its place and renamed into it; if the
place is taken, the first writer wins and ours is discarded. Readers only ever see complete
entries. An entry that fails its checks on read is logged, moved aside, removed and rebuilt.

CLI: ``python -m autodp.accel.crm info|clear [--dir DIR]`` (default: ``cache.dir`` of the config).
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autodp.accel.pts import PTS_TEAMS, PtsReport
from autodp.data.io import Row, atomic_write, content_hash, file_digest
from autodp.ops.base import Operator, OpReport
from autodp.resources import PROJECT_ROOT, resolve_path
from autodp.strategy import Team

log = logging.getLogger(__name__)
FORMAT = 1  # part of every key: bump when an entry's content or meaning changes
_REPORTS = {cls.__name__: cls for cls in (OpReport, PtsReport)}


def _plain(value: Any) -> Any:
    """The JSON form of a parameter. A data spec gets its file's digest, so a file edited in
    place never reuses results computed from its old content."""
    if isinstance(value, Mapping):
        out = {str(k): _plain(v) for k, v in value.items()}
        path = value.get("path")
        if isinstance(path, str) and resolve_path(path).is_file():
            out["sha256"] = file_digest(resolve_path(path))
        return out
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"CRM cannot key a parameter of type {type(value).__name__}; configure operators with plain data")


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def step_keys(rows_hash: str, chains: Sequence[tuple[Team, Sequence[Operator]]], screener: Any = None) -> list[list[str]]:
    """For each team in ``chains``, the key of every step T1..Ti-1 + the first k operators of Ti,
    applied to rows whose ``content_hash`` is ``rows_hash``. A team's last step has the key of
    the prefix T1..Ti, so resuming within a team (process=ray) and reusing whole teams share keys."""
    key, keys = _digest("rows", FORMAT, rows_hash), []
    for team, ops in chains:
        screened = None
        if screener is not None and team in PTS_TEAMS:
            screened = getattr(screener, "digest", None)
            if screened is None:
                raise TypeError(f"CRM keys a screened team by the screening model's digest; "
                                f"{type(screener).__name__} has none")
        params = [[op.name, _plain(op.params())] for op in ops]
        keys.append([_digest(key, team.value, params[:k], screened) for k in range(1, len(ops) + 1)])
        key = keys[-1][-1]
    return keys


def prefix_keys(rows: list[Row], chains: Sequence[tuple[Team, Sequence[Operator]]], screener: Any = None) -> list[str]:
    """The key of every prefix T1..Ti, i = 1..n, of the teams in ``chains`` applied to ``rows``."""
    return [team[-1] for team in step_keys(content_hash(rows), chains, screener)]


def score_key(rows: list[Row], finetune: Mapping[str, Any], eval_cfg: Mapping[str, Any], val: Mapping[str, Any],
              pool: Mapping[str, Any], seed: int) -> str:
    """The key of fine-tuning on ``rows`` and scoring on ``val`` (the base is pre-warmed on ``pool``)."""
    return _digest("score", FORMAT, content_hash(rows), _plain(finetune), _plain(eval_cfg), _plain(val),
                   _plain(pool), seed)


def _record(report: OpReport) -> dict[str, Any]:
    """A report as stored: its class and fields, less ``cached`` (whoever loads it sets that)."""
    record = {"kind": type(report).__name__, **report.as_dict()}
    del record["cached"]
    return record


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with suppress(FileNotFoundError):  # another job may remove an entry meanwhile
                total += os.stat(os.path.join(folder, name)).st_size
    return total


class Crm:
    """The cache under ``root``: processed prefixes and scores, see the module docstring."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.datasets, self.scores = self.root / "datasets", self.root / "scores"

    def _entry(self, key: str) -> Path:
        return self.datasets / key[:2] / key

    def _score_file(self, key: str) -> Path:
        return self.scores / key[:2] / f"{key}.json"

    def _discard(self, path: Path, problem: Exception) -> None:
        """Move a bad entry out of readers' way in one rename, then delete it."""
        log.warning("CRM: discarding corrupt cache entry %s (%s: %s); it is rebuilt", path, type(problem).__name__,
                    problem)
        aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}.corrupt")
        try:
            path.rename(aside)
        except OSError:
            return  # another reader discarded it first, or the cache is read-only: it stays a miss
        if aside.is_dir():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)

    def load(self, key: str) -> tuple[list[Row], list[OpReport]] | None:
        """The rows and reports of a stored prefix (reports marked cached), or None."""
        entry = self._entry(key)
        if not entry.is_dir():
            return None
        try:
            meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
            data = (entry / "rows.jsonl").read_bytes()
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise ValueError("rows.jsonl does not match its checksum")
            rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
            if len(rows) != meta["rows"]:
                raise ValueError(f"{len(rows)} rows, meta.json says {meta['rows']}")
            reports = [_REPORTS[r.pop("kind")](**r, cached=True) for r in meta["reports"]]
        except FileNotFoundError as e:
            if entry.is_dir():  # a file is missing from a complete entry
                self._discard(entry, e)
            return None  # else another reader discarded it meanwhile: a plain miss
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            self._discard(entry, e)
            return None
        return rows, reports

    def store(self, key: str, rows: list[Row], reports: Sequence[OpReport], prefix: str) -> bool:
        """Store a processed prefix; False when an entry exists (first writer wins) or the write
        failed (logged: a cache that cannot be written only costs time)."""
        entry = self._entry(key)
        if entry.is_dir():
            return False
        tmp = entry.with_name(f".{key}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.mkdir(parents=True)
            data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
            _write_synced(tmp / "rows.jsonl", data)
            meta = {"prefix": prefix, "rows": len(rows), "sha256": hashlib.sha256(data).hexdigest(),
                    "created": _now(), "reports": [_record(r) for r in reports]}
            _write_synced(tmp / "meta.json", json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8"))
            try:
                os.rename(tmp, entry)
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    return False  # another writer's complete entry is in place: keep it
                raise
            return True
        except OSError as e:
            log.warning("CRM: could not store prefix %s in %s (%s); continuing without it", prefix, self.root, e)
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already when the rename succeeded

    def longest_prefix(self, keys: Sequence[str], rows: list[Row]) -> tuple[int, list[Row], list[OpReport]]:
        """(i, rows, reports) of the longest stored prefix T1..Ti; (0, ``rows``, []) when none is."""
        for i in range(len(keys), 0, -1):
            hit = self.load(keys[i - 1])
            if hit is not None:
                return i, *hit
        return 0, rows, []

    def metrics(self, key: str) -> dict[str, float] | None:
        """The stored metrics of an evaluation, or None."""
        path = self._score_file(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data["key"] != key or not isinstance(data["metrics"], dict):
                raise ValueError("not the score of this key")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            self._discard(path, e)
            return None
        return data["metrics"]

    def put_metrics(self, key: str, metrics: Mapping[str, float]) -> None:
        """Writers of one key computed the same evaluation, so an atomic replace is enough here."""
        try:
            with atomic_write(self._score_file(key)) as f:
                json.dump({"key": key, "metrics": dict(metrics), "created": _now()}, f)
        except OSError as e:
            log.warning("CRM: could not store a score in %s (%s); continuing without it", self.root, e)

    def info(self) -> dict[str, int]:
        def count(folder: Path, pattern: str) -> int:
            return sum(1 for p in folder.glob(pattern) if not p.name.startswith("."))

        return {"datasets": count(self.datasets, "*/*"), "scores": count(self.scores, "*/*.json"),
                "bytes": _tree_bytes(self.root)}

    def clear(self) -> dict[str, int]:
        """Remove every entry (and leftovers of interrupted clears); returns ``info()`` from before.
        Each tree leaves readers' view in one rename, so they see complete entries or none."""
        before = self.info()
        if self.root.is_dir():
            for child in list(self.root.iterdir()):
                if child.name in ("datasets", "scores"):
                    aside = self.root / f".{child.name}.{uuid.uuid4().hex}.removing"
                    child.rename(aside)
                elif child.name.endswith(".removing"):
                    aside = child
                else:
                    continue  # not ours
                shutil.rmtree(aside, ignore_errors=True)
        return before


def configured_dir() -> str:
    """``cache.dir`` of the project config."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return str(compose("config").cache.dir)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m autodp.accel.crm",
                                     description="Inspect or empty the cache-and-reuse cache (paper 3.3.4).")
    parser.add_argument("command", choices=("info", "clear"))
    parser.add_argument("--dir", help="the cache folder (default: cache.dir of conf/config.yaml)")
    args = parser.parse_args(argv)
    crm = Crm(args.dir or configured_dir())
    n = crm.info() if args.command == "info" else crm.clear()
    verb = "holds" if args.command == "info" else "removed"
    print(f"{crm.root}: {verb} {n['datasets']} processed datasets and {n['scores']} scores, "
          f"{n['bytes'] / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
