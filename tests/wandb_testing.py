"""Read W&B offline run dirs back the way a person would, with `wandb leet inspect --json` (the
metrics live only in the binary run-<id>.wandb file), and scan them for leaked text."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WANDB = Path(sys.executable).parent / "wandb"


def leet(run_dir: Path) -> str:
    r = subprocess.run([str(WANDB), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@dataclass
class OfflineRun:
    dir: Path
    run: dict[str, Any]                                          # the "run" record: id, group, job_type, config
    history: dict[int, dict[str, Any]] = field(default_factory=dict)  # by step, merged
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None

    @classmethod
    def read(cls, run_dir: Path) -> "OfflineRun":
        recs = [json.loads(line) for line in leet(run_dir).splitlines() if line.strip()]
        out = cls(run_dir, next(r["run"] for r in recs if r["type"] == "run"))
        for r in recs:
            if r["type"] == "history":
                out.history.setdefault(int(r["history"]["step"].get("num", 0)), {}).update(r["history"]["item"])
            elif r["type"] == "summary":
                out.summary.update(r["summary"].get("update", {}))
            elif r["type"] == "artifact":
                out.artifacts.append(r["artifact"])
            elif r["type"] == "exit":
                out.exit_code = r["exit"].get("exit_code", 0)
        return out

    @property
    def job_type(self) -> str:
        return self.run.get("job_type", "")

    @property
    def group(self) -> str:
        return self.run.get("run_group", "")

    def table(self, item: dict[str, Any], key: str) -> list[dict[str, Any]]:
        """A logged wandb.Table (a history item or the summary refers to its JSON file) as dicts."""
        t = json.loads((self.dir / "files" / item[f"{key}.path"]).read_text())
        return [dict(zip(t["columns"], row)) for row in t["data"]]


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run under ``root/wandb``."""
    return [OfflineRun.read(d) for d in sorted((root / "wandb").glob("offline-run-*"))]


def leaks(root: Path, markers: list[str]) -> list[str]:
    """'<marker> in <file>' for every W&B file under ``root`` holding a marker: the raw bytes read
    leniently (UTF-8 as written, or JSON-escaped), plus each .wandb file's records reassembled by
    leet (a string cut by a record block boundary is whole there)."""
    found = []
    for f in sorted((root / "wandb").rglob("*")):
        if not f.is_file():
            continue
        texts = [f.read_bytes().decode("utf-8", errors="replace")]
        if f.suffix == ".wandb":
            texts.append(leet(f))
        for m in markers:
            forms = {m, json.dumps(m)[1:-1]}  # the ASCII-escaped form json.dumps writes by default
            if any(form in text for form in forms for text in texts):
                found.append(f"{m} in {f}")
    return found
