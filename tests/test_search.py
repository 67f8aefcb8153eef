"""End-to-end searches through launch.py: resume after a kill, and the privacy canary."""
import ast
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from autodp.accel.screening import compose, screening_model
from autodp.data.io import load_rows, write_rows
from conftest import ROOT, SAMPLES
from wandb_testing import leaks, offline_runs

# A small search: few rows, two rounds, the Cleaning team, two paired seeds (the fewest the pick
# rule takes), no held-out confirmation unless a test asks for it; the pre-warmed base is the
# default one (cached once).
SMALL = ["dataset.train_limit=80", "eval.val_limit=40", "search.max_rounds=2", "search.min_rounds=2", "teams=cleaning",
         "eval.seeds=2", "search.confirm=false"]
# For tests of jobs, resume and privacy, not of the pick rule: one seed halves every fine-tune.
ONE_SEED = ["eval.seeds=1", "search.pick=top"]


def launch(run_dir: Path, *overrides: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [sys.executable, "launch.py", *SMALL, *overrides, f"hydra.run.dir={run_dir}"]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r


def signatures(run_dir: Path) -> list[str]:
    return [json.loads(x)["signature"] for x in (run_dir / "evaluations.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_resume_after_kill_reevaluates_nothing(tmp_path):
    import wandb

    # A W&B service of this process is in the searches' environment (as after any in-process W&B
    # test): the killed search's run must not stay "in use" there and block the resume.
    wandb.setup()
    assert os.environ.get("WANDB_SERVICE")
    run_dir = tmp_path / "run"
    p = launch(run_dir, "agent=heuristic", "search.confirm=true", wait=False)
    # Kill once r_0 is journaled and round 1 was proposed: its first strategy is then being fine-tuned.
    evals, proposals = run_dir / "evaluations.jsonl", run_dir / "agent" / "proposals.jsonl"
    deadline = time.time() + 900
    while time.time() < deadline and not (evals.exists() and proposals.exists()):
        assert p.poll() is None, p.stdout.read()[-3000:]
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)  # a hard crash, mid-search
    p.wait()
    done_before = signatures(run_dir)
    assert len(done_before) >= 1 and not (run_dir / "summary.md").exists()

    r = launch(run_dir, "agent=heuristic", f"resume={run_dir}")
    after = signatures(run_dir)
    assert after[: len(done_before)] == done_before
    assert len(after) == len(set(after)), "a finished strategy was evaluated again"
    assert "reusing" in r.stdout + r.stderr
    summary = json.loads((run_dir / "results.json").read_text())
    assert summary["stop_reason"]
    # every score is an estimate; the held-out confirmation ran on the 300 CMD test rows
    ok = [row for row in summary["table"] if row["status"] == "ok" and row["strategy"] != "none"]
    assert ok and all(len(row["seed_scores"]) == 2 for row in ok)
    # the SE pools one degree of freedom (2 seeds) per processed dataset other than none's
    fp = {e["strategy"]: e["data_fingerprint"] for e in map(json.loads, evals.read_text().splitlines())}
    own = {fp[row["strategy"]] for row in ok} - {fp["none"]}
    assert summary["se_df"] == len(own) and all((row["se"] is not None) == bool(own) for row in ok)
    test = summary["test"]
    assert test["rows"] == 300 and test["seeds"] == 2 and "cleaning" in test["arms"]
    assert all(a["wins"] + a["ties"] + a["losses"] == 300 for a in test["arms"].values())
    assert "vs none on test:" in (run_dir / "summary.md").read_text()
    confirmed = (run_dir / "confirm.jsonl").read_text()

    # Resuming a finished run performs no fine-tune at all, the confirmation's included.
    launch(run_dir, "agent=heuristic", f"resume={run_dir}")
    assert signatures(run_dir) == after and (run_dir / "confirm.jsonl").read_text() == confirmed
    assert json.loads((run_dir / "results.json").read_text())["best"] == summary["best"]


CANARIES = ["KANARIE-7f3a9c", "金丝雀标记甲乙丙"]


@pytest.mark.slow
def test_privacy_canary_never_reaches_agent_or_tracking(tmp_path):
    """Plant unique markers in every row; run a search with the real LLM agent; look everywhere
    except the data files themselves."""
    rows = load_rows(SAMPLES / "cmd" / "train.jsonl", limit=400)
    planted = [dict(r, instruction=f"{CANARIES[0]} {r['instruction']}", output=f"{r['output']}{CANARIES[1]}")
               for r in rows]
    data = tmp_path / "data" / "train.jsonl"
    write_rows(data, planted)
    run_dir = tmp_path / "run"
    # All four teams, so the LLM operators and LESS see the markers too (capped to a few LLM calls).
    launch(run_dir, f"dataset.train={data}", "agent=smollm2", "teams=default", "llm=smollm2", "llm.max_rows=2", "llm.max_pairs=1",
           "llm.client.max_tokens=48", "logger.eval_runs=true", *ONE_SEED)  # every kind of W&B run: the search's and one per evaluation
    transcript = (run_dir / "agent" / "transcript.jsonl").read_text()
    assert "Data Cleaning Team" in transcript  # the agent really was prompted
    checked = 0
    for f in run_dir.rglob("*"):
        data = "datasets" in f.parts or "hf" in f.parts or f == run_dir / "export" / "train.jsonl"
        if f.is_file() and not data:
            text = f.read_text(errors="replace")
            checked += 1
            for c in CANARIES:
                assert c not in text, f"canary {c!r} leaked into {f}"
    assert checked >= 5
    # W&B (offline, in the run dir): the binary .wandb files too, read leniently and as leet's records.
    assert (run_dir / "wandb").is_dir()
    runs = offline_runs(run_dir)
    assert runs and all((r.dir / f"run-{r.run['run_id']}.wandb").stat().st_size > 0 for r in runs)
    assert not leaks(run_dir, CANARIES)
    # The data did carry the canary through processing (so the check above could fail).
    assert CANARIES[1] in (run_dir / "export" / "train.jsonl").read_text()
    assert json.loads((run_dir / "export" / "manifest.json").read_text())["input"]["rows"] == 80


def test_agent_package_imports_no_data_code():
    """Privacy by construction: the agent cannot load, hold or process samples."""
    forbidden = ("autodp.data", "autodp.ops", "autodp.evaluate", "autodp.search", "autodp.run",
                 "datasets", "autodp.store", "autodp.tracking")
    for py in (ROOT / "autodp" / "agent").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for n in names:
                assert not n.startswith(forbidden), f"{py.name} imports {n}"


@pytest.mark.slow
def test_multirun_over_accel_and_datasets_writes_the_timing_grid(tmp_path):
    sweep = tmp_path / "sweep"
    r = subprocess.run([sys.executable, "launch.py", "-m", "accel=none,dps", "dataset=cmd,cmedqa2", "agent=heuristic",
                        "teams=cleaning", "dataset.train_limit=60", "eval.val_limit=30", "search.max_rounds=1",
                        "search.min_rounds=1", "eval.seeds=2", "search.confirm=false", f"hydra.sweep.dir={sweep}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-5000:]
    results = sorted(sweep.glob("*/results.json"))
    assert len(results) == 4
    cells = sorted((OmegaConf.load(p.parent / "config.yaml").dataset.name,
                    OmegaConf.load(p.parent / "config.yaml").accel.dps.enabled) for p in results)
    assert cells == [("cmd", False), ("cmd", True), ("cmedqa2", False), ("cmedqa2", True)]
    # cmedqa2 has no separate val file: the run holds out its last rows and records the split.
    split = [p.parent / "splits" / "val.jsonl" for p in results if (p.parent / "splits" / "val.jsonl").exists()]
    assert len(split) == 2 and all(len(load_rows(v)) == 98 for v in split)
    # The Hydra callback wrote the grid (paper Table 5) into the sweep dir.
    grid = (sweep / "grid.md").read_text()
    assert "cmd: saved (%)" in grid and "cmedqa2: time (min)" in grid
    assert [line.split(" | ")[0] for line in grid.splitlines()[2:]] == ["| none", "| dps"]
    rows = list(csv.DictReader((sweep / "grid.csv").open()))
    assert len(rows) == 4 and {r["saved_pct"] for r in rows if r["accel"] == "none"} == {"0.0"}
    times = {(r["dataset"], r["accel"]): float(r["seconds"]) for r in rows}
    for r in rows:
        base = times[(r["dataset"], "none")]
        # CSV seconds have 3 decimals: the recomputed share matches to 0.1 points
        assert float(r["saved_pct"]) == pytest.approx(100 * (1 - float(r["seconds"]) / base), abs=0.1)
    assert (sweep / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_dps_search_evaluates_every_strategy_on_the_stratified_sample(tmp_path):
    run_dir = tmp_path / "run"
    launch(run_dir, "agent=heuristic", "accel=dps")
    sample = load_rows(run_dir / "splits" / "train_dps.jsonl")
    full = load_rows(SAMPLES / "cmd" / "train.jsonl", limit=80)  # SMALL's train_limit
    ids = [r["id"] for r in full]
    assert [ids.index(r["id"]) for r in sample] == sorted(ids.index(r["id"]) for r in sample)  # row order
    assert 15 <= len(sample) <= 17  # 20% of each stratum, rounded
    evals = [json.loads(x) for x in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    assert len(evals) >= 2 and all(e["rows_in"] == len(sample) for e in evals)
    flags = screening_model(compose(["dataset.train_limit=80"])).predict  # the run's F: fitted on its rows
    noisy_full, noisy_sample = flags(full).mean(), flags(sample).mean()
    assert abs(noisy_full - noisy_sample) <= 1.5 / len(sample), (noisy_full, noisy_sample)
    assert json.loads((run_dir / "results.json").read_text())["timings"]["dps"] > 0
    # The winner is applied to the full training set, not to the sample.
    assert json.loads((run_dir / "export" / "manifest.json").read_text())["input"]["rows"] == 80
