"""task=apply: a strategy applied to the full training set and exported as JSONL, an HF
`datasets` folder and a manifest whose per-step counts account for every row."""
import json
import subprocess
import sys

import pytest
from datasets import load_from_disk

from autodp.data.io import load_rows
from conftest import ROOT

# LESS with a short warm-up: the export, not the selection quality, is under test.
LESS = ["teams.selection.0.less_select.warmup_epochs=1", "teams.selection.0.less_select.n_val=8"]


def apply(run_dir, *overrides):
    return subprocess.run([sys.executable, "launch.py", "task=apply", "dataset.train_limit=150", *overrides,
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_apply_exports_the_processed_set_with_counts_per_step(tmp_path):
    run_dir = tmp_path / "run"
    r = apply(run_dir, "strategy='cleaning>selection'", *LESS)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = run_dir / "export"
    m = json.loads((out / "manifest.json").read_text())
    assert m["strategy"] == "cleaning>selection" and m["input"]["rows"] == 150
    steps = m["steps"]
    assert [s["op"] for s in steps] == [next(iter(e)) for e in m["operators"]["cleaning"]] + ["less_select"]
    n = m["input"]["rows"]
    for s in steps:  # each step starts where the previous one ended
        assert s["rows_in"] == n
        n = s["rows_out"]
    assert steps[-1]["rows_out"] == round(0.5 * steps[-1]["rows_in"]) == m["output"]["rows"]
    rows = load_rows(out / "train.jsonl")
    hf = load_from_disk(str(out / "hf"))
    assert len(rows) == hf.num_rows == m["output"]["rows"] < 150
    assert hf["id"] == [r["id"] for r in rows] and hf["output"] == [r["output"] for r in rows]
    assert m["operators"]["selection"][0]["less_select"]["keep_fraction"] == 0.5

    # Applying again replaces the export whole (written beside it, then renamed in); another
    # strategy, so that a file left from the first export would show.
    again = apply(run_dir, "strategy=cleaning", *LESS)
    assert again.returncode == 0
    m2 = json.loads((out / "manifest.json").read_text())
    assert m2["strategy"] == "cleaning" and [s["op"] for s in m2["steps"]] == [s["op"] for s in steps[:-1]]
    assert len(load_rows(out / "train.jsonl")) == load_from_disk(str(out / "hf")).num_rows == steps[-1]["rows_in"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("strategy, words", [("null", "task=apply needs a strategy"),
                                             ("'cleaning>cleaning'", "duplicate team")])
def test_apply_refuses_a_missing_or_bad_strategy(tmp_path, strategy, words):
    r = apply(tmp_path / "run", f"strategy={strategy}", "teams=cleaning")
    assert r.returncode != 0 and words in r.stderr
    assert not (tmp_path / "run" / "export").exists()
