"""W&B tracking read back from real offline run files, and the HTML report, on real small runs."""
import base64
import csv
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from autodp.data.io import load_rows
from autodp.report import write
from autodp.tracking.wandb_run import COLUMNS, resolve_mode
from conftest import ROOT, SAMPLES
from test_search import SMALL, launch
from wandb_testing import leaks, offline_runs

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """A small search whose evaluations open W&B runs of their own too (logger.eval_runs)."""
    run_dir = tmp_path_factory.mktemp("tracking") / "run"
    launch(run_dir, "agent=heuristic", "logger.eval_runs=true")
    return run_dir


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("tracking") / "sweep"
    r = subprocess.run([sys.executable, "launch.py", "-m", "accel=none,dps", "dataset=cmd", *SMALL, "agent=heuristic",
                        "search.max_rounds=1", "search.min_rounds=1", f"hydra.sweep.dir={sweep}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-5000:]
    return sweep


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.slow
def test_search_run_holds_rounds_decisions_table_summary_and_transcript(search_run):
    res = results(search_run)
    runs = offline_runs(search_run)
    (search,) = [r for r in runs if r.job_type == "autodp"]  # job type = search.method
    assert search.run["run_id"].startswith(res["signature"]) and res["signature"] in search.run["display_name"]
    assert search.group == f"{search_run.parent.name}-{search_run.name}"  # a single run is its own group
    assert search.exit_code == 0

    table = res["table"]
    for rnd in sorted({row["round"] for row in table}):
        h, rows = search.history[rnd], [row for row in table if row["round"] == rnd]
        ok = [row for row in rows if row["status"] == "ok"]
        assert (h["round"], h["proposed"], h["ok"]) == (rnd, len(rows), len(ok))
        assert h["r0"] == pytest.approx(res["r0"]) and h["r_max"] == pytest.approx(max(row["r"] for row in ok))
        so_far = [row["s"] for row in table if row["round"] <= rnd and row["s"] is not None]
        assert h["best_s"] == pytest.approx(max(so_far))
        # se and beyond_noise are logged as they stood that round (the pooled SE firms up as
        # strategies join); results.json holds the final ones
        live = [c for c in COLUMNS if c not in ("se", "beyond_noise")]
        assert [{c: x[c] for c in live} for x in search.table(h, "round_strategies")] == \
            [{c: row[c] for c in live} for row in rows]
    for p in jsonl(search_run / "agent" / "proposals.jsonl"):
        assert search.history[p["round"]]["decision"] == p["decision"]
    # Per-round time deltas add up to the run's totals.
    for stage in ("eval.finetune", "eval.score"):
        assert sum(h.get(f"time/{stage}", 0.0) for h in search.history.values()) == pytest.approx(res["timings"][stage])

    s = search.summary
    assert search.table(s, "strategies") == [{c: row[c] for c in COLUMNS} for row in table]
    assert (s["best"], s["stop_reason"], s["evaluations"]) == (res["best"], res["stop_reason"], len(table))
    assert s["r0"] == pytest.approx(res["r0"])
    assert s["timings"] == pytest.approx(res["timings"])
    (art,) = [a for a in search.artifacts if a["type"] == "agent-transcript"]
    files = {c["path"]: int(c["size"]) for c in art["manifest"]["contents"]}
    # The heuristic agent writes no prompts, only proposals.
    assert files == {"proposals.jsonl": (search_run / "agent" / "proposals.jsonl").stat().st_size}

    # Each evaluation is a W&B run of its own in the search's group, id from its request signature.
    evals = {e["signature"]: e for e in jsonl(search_run / "evaluations.jsonl")}
    ev_runs = [r for r in runs if r.job_type == "evaluate"]
    assert sorted(r.run["run_id"].split("-")[0] for r in ev_runs) == sorted(evals)
    for r in ev_runs:
        e = evals[r.run["run_id"].split("-")[0]]
        assert r.group == search.group and r.exit_code == 0
        assert (r.summary["status"], r.summary["rows_out"]) == (e["status"], e["rows_out"])
        assert r.summary["score"] == pytest.approx(e["score"])
        assert r.summary["time/finetune"] == pytest.approx(e["timings"]["finetune"])


@pytest.mark.slow
def test_a_resumed_search_continues_its_wandb_run(search_run):
    before = offline_runs(search_run)
    launch(search_run, "agent=heuristic", f"resume={search_run}")  # finished: nothing is evaluated again
    after = offline_runs(search_run)
    ids = [r.run["run_id"] for r in after if r.job_type == "autodp"]
    assert len(ids) == 2 and len(set(ids)) == 1  # offline: a second file of the same W&B run
    assert len([r for r in after if r.job_type == "evaluate"]) == len([r for r in before if r.job_type == "evaluate"])


@pytest.mark.slow
def test_logger_none_writes_no_wandb_files(tmp_path):
    run_dir = tmp_path / "run"
    launch(run_dir, "agent=heuristic", "logger=none", "search.max_rounds=1", "search.min_rounds=1")
    assert (run_dir / "results.json").exists() and not (run_dir / "wandb").exists()


@pytest.mark.slow
def test_multirun_logs_the_timing_grid_as_a_table_in_the_sweep_group(sweep):
    group = f"{sweep.parent.name}-{sweep.name}"
    (grid,) = offline_runs(sweep)
    assert (grid.job_type, grid.group, grid.exit_code) == ("grid", group, 0)
    rows = list(csv.DictReader((sweep / "grid.csv").open()))
    logged = grid.table(grid.summary, "grid")
    assert [(r["dataset"], r["accel"], r["best"], r["evaluations"]) for r in logged] == \
        [(r["dataset"], r["accel"], r["best"], int(r["evaluations"])) for r in rows]
    assert [r["seconds"] for r in logged] == pytest.approx([float(r["seconds"]) for r in rows], abs=1e-3)
    assert grid.summary["grid_plot._type"] == "image-file"
    cells = sorted(p.parent for p in sweep.glob("*/results.json"))
    assert len(cells) == 2
    for cell in cells:
        (search,) = offline_runs(cell)
        assert search.group == group and search.run["run_id"].startswith(results(cell)["signature"])


def test_the_leak_scan_finds_markers_in_a_real_wandb_file(tmp_path):
    """So that the privacy canary's W&B check can fail: markers logged on purpose are found."""
    import wandb

    markers = ["KANARIE-test-1b2c", "金丝雀测试标记"]
    run = wandb.init(project="scan", dir=str(tmp_path), mode="offline", reinit="create_new",
                     settings=wandb.Settings(console="off"))
    run.log({"t": wandb.Table(columns=["a"], data=[[markers[0]]])})
    run.summary["note"] = markers[1]
    run.finish()
    found = leaks(tmp_path, markers)
    assert any(f.startswith(markers[0]) for f in found)
    assert any(f.startswith(markers[1]) and f.endswith(".wandb") for f in found)


def test_no_api_key_means_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login u password p\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert resolve_mode("auto") == "offline" and resolve_mode("online") == "offline"
    netrc.write_text("machine api.wandb.ai login user password 0123456789abcdef\n")
    netrc.chmod(0o600)
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("auto") == "offline" and resolve_mode("disabled") == "disabled"


class Page(HTMLParser):
    """The parts of a report the tests look at: image sources, table rows, all text."""

    def __init__(self):
        super().__init__()
        self.images, self.rows, self.text, self.ids = [], [], [], []
        self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        elif tag == "tr":
            self._row = {"class": a.get("class") or "", "cells": []}
            self.rows.append(self._row)
        if "id" in a:
            self.ids.append(a["id"])

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and data.strip():
            self._row["cells"].append(data.strip())

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def assert_pngs(page: Page, n: int) -> None:
    assert len(page.images) == n
    for src in page.images:
        head, _, data = src.partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(data, validate=True)[:8] == PNG


def assert_no_sample_text(html: str) -> None:
    rows = load_rows(SAMPLES / "cmd" / "train.jsonl", limit=80)
    snippets = [r[k][:16] for r in rows for k in ("instruction", "output") if len(r[k]) >= 16]
    assert snippets and not [s for s in snippets if s in html]


@pytest.mark.slow
def test_report_of_a_run_has_its_plots_strategies_and_winner(search_run, tmp_path):
    out = write(search_run, tmp_path / "report.html")
    page, res = parse(out), results(search_run)
    assert_pngs(page, 2)  # score per round, time per stage
    strategies = {row["cells"][1].lstrip("★ ") for row in page.rows
                  if len(row["cells"]) > 2 and row["cells"][0].isdigit()}
    assert {row["strategy"] for row in res["table"]} <= strategies
    (winner,) = [row for row in page.rows if row["class"] == "winner"]
    assert winner["cells"][1] == f"★ {res['best']}"
    assert res["stop_reason"] in "".join(page.text)
    assert_no_sample_text(out.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_report_of_a_sweep_has_the_grid_and_a_section_per_run(sweep):
    r = subprocess.run([sys.executable, "-m", "autodp.report", str(sweep)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = sweep / "report.html"
    assert r.stdout.strip() == str(out)
    page = parse(out)
    assert_pngs(page, 1 + 2 * 2)  # the grid, then two plots per run
    assert {results(c.parent)["signature"] for c in sweep.glob("*/results.json")} <= set(page.ids)
    header = next(row["cells"] for row in page.rows if row["cells"] and row["cells"][0] == "accel")
    assert header[1:] == ["cmd: time (min)", "cmd: saved (%)"]
    assert [row["cells"][0] for row in page.rows if row["cells"] and row["cells"][0] in ("none", "dps")][:2] == \
        ["none", "dps"]
    assert_no_sample_text(out.read_text(encoding="utf-8"))
