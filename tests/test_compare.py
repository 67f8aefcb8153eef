"""task=compare: reference metrics on known strings, the judge/ROUGE-L agreement, and a tiny
end-to-end compare (two arms, a few test questions, the tiny CPU model and the local judge)
that writes the paper's table and, killed after its first arm, resumes without retraining or
regenerating that arm."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from autodp.compare.task import agreement
from autodp.data.io import load_rows
from autodp.judge.pairwise import Judgment
from autodp.metrics import METRICS
from autodp.metrics.overlap import bleu_char, rouge_l_char
from autodp.report import build
from conftest import ROOT
from wandb_testing import leaks, offline_runs


def test_rouge_l_over_characters_on_known_strings():
    # LCS of 7 characters: precision 7/7, recall 7/9, F1 = 2 * 1 * 7/9 / (1 + 7/9) = 0.875
    assert rouge_l_char(["头痛多喝水休息"], ["头痛要多喝水并休息"]) == [pytest.approx(87.5)]
    assert rouge_l_char(["高血压", "多 喝 水"], ["高血压", "多喝水"]) == [pytest.approx(100.0)] * 2  # spaces aside
    assert rouge_l_char(["感冒"], ["骨折"]) == [0.0]


def test_bleu_over_characters_on_known_strings():
    assert bleu_char(["头痛要多喝水并休息"], ["头痛要多喝水并休息"]) == [pytest.approx(100.0)]
    assert bleu_char(["感冒发烧"], ["骨折外伤"]) == [0.0]
    # 4-gram precisions 7/7, 4/6, 2/5, 0/4 -> effective order 3 -> geometric mean times brevity 7/9
    assert 0 < bleu_char(["头痛多喝水休息"], ["头痛要多喝水并休息"])[0] < 50


def test_every_metric_says_which_way_is_better_and_what_it_needs():
    assert {"nll_per_char", "rouge_l_char", "bleu_char", "judge_win_rate"} <= set(METRICS)
    assert METRICS["nll_per_char"].signed(2.0) == -2.0 and METRICS["rouge_l_char"].signed(2.0) == 2.0
    assert all(m.per_question is not None for m in METRICS.values() if m.needs == "generations")


def test_the_judge_and_rouge_agree_only_where_both_name_a_better_answer():
    judgments = [Judgment(str(i), None, None, o) for i, o in enumerate(["win", "loss", "win", "tie", "win"])]
    ours, theirs = [50, 10, 10, 90, 30], [40, 20, 30, 0, 30]
    # q0 agree, q1 agree, q2 disagree; q3 a judge tie, q4 a ROUGE-L tie: left out
    assert agreement(judgments, ours, theirs) == (pytest.approx(2 / 3), 3)


def compare(run_dir, wait=True):
    cmd = [sys.executable, "launch.py", "task=compare", "compare.arms=['raw=none',cleaning]", "compare.questions=3",
           "dataset.train_limit=80", "compare.generation.max_tokens=32", f"hydra.run.dir={run_dir}"]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r


@pytest.mark.slow
def test_a_compare_writes_the_table_and_resumes_after_a_kill_without_redoing_an_arm(tmp_path):
    run_dir = tmp_path / "run"
    first = run_dir / "arms" / "raw" / "answers.jsonl"
    proc = compare(run_dir, wait=False)
    deadline = time.time() + 900
    while not first.exists() and time.time() < deadline:
        assert proc.poll() is None, "compare ended before its first arm had answered"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # during the second arm or the judge
    proc.wait()
    assert not (run_dir / "compare.json").exists()
    answered = first.read_text()
    compare(run_dir)
    out = json.loads((run_dir / "compare.json").read_text())
    raw = out["arms"]["raw"]
    assert (raw["trained"], raw["generated"], raw["cached"]) == (False, 0, 3)  # nothing of arm 1 redone
    assert first.read_text() == answered
    assert out["arms"]["raw"]["rows"] == 80 and out["arms"]["cleaning"]["rows"] < 80  # cleaning removed rows
    (pair,) = out["pairs"]
    assert (pair["ours"], pair["theirs"], pair["questions"]) == ("raw", "cleaning", 3)
    assert pair["judged"] + pair["unparsed"] == 3
    assert pair["judged"] == 0 or pytest.approx(pair["wins"] + pair["ties"] + pair["losses"]) == 1
    judged = [json.loads(x) for x in (run_dir / "judgments" / "raw_vs_cleaning.jsonl").read_text().splitlines()]
    assert len(judged) == 3 and all(j["outcome"] in ("win", "tie", "loss", "unparsed") for j in judged)
    md = (run_dir / "compare.md").read_text()
    assert "Our Wins (95% CI)" in md and "ROUGE-L" in md and "| raw | cleaning |" in md
    assert (run_dir / "compare.png").stat().st_size > 0 and "raw,cleaning," in (run_dir / "compare.csv").read_text()
    assert all(len(out["arms"][a]["rouge_l_char"]) == 3 for a in ("raw", "cleaning"))
    # The table goes to W&B and to the HTML report; the answers stay in the run dir.
    (run,) = [r for r in offline_runs(run_dir) if r.job_type == "compare"]
    assert [(r["ours"], r["theirs"]) for r in run.table(run.summary, "compare")] == [("raw", "cleaning")]
    asked = [r["instruction"] for r in load_rows(ROOT / "autodp/data/samples/cmd/test.jsonl", limit=3)]
    said = [json.loads(x)["answer"] for x in answered.splitlines()]
    assert all(len(q) >= 8 for q in asked) and not leaks(run_dir, asked + [a for a in said if len(a) >= 8])
    page = build(run_dir)
    assert "Final evaluation" in page and "Our Wins (95% CI)" in page and "data:image/png" in page


def test_compare_refuses_fewer_than_two_arms(tmp_path):
    r = subprocess.run([sys.executable, "launch.py", "task=compare", "compare.arms=[none]",
                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "needs compare.arms with two arms at least" in r.stderr


def test_an_arm_is_named_by_its_prefix_and_an_equals_sign_in_a_path_names_nothing(tmp_path):
    from autodp.compare.arms import resolve_arm

    run = tmp_path / "0_accel.crm.enabled=True,dataset=cmd_noisy,seed=0" / "run"
    (run / "export").mkdir(parents=True)
    (run / "export" / "train.jsonl").write_text(
        (ROOT / "autodp/data/samples/cmd/train.jsonl").read_text().splitlines()[0] + "\n")
    assert resolve_arm(str(run), None, tmp_path).name == "run"
    assert resolve_arm(f"ours={run}", None, tmp_path).name == "ours"
    assert len(resolve_arm(f"ours={run / 'export'}", None, tmp_path).rows) == 1
