"""The run store as a journal: torn last lines repaired so that any number of resumes work, run
dirs held by one process at a time, and failed evaluations retried on resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from autodp.agent import build_agent
from autodp.evaluate.request import EvalRequest, EvalResult
from autodp.report import Run
from autodp.search import Search
from autodp.store import RunDirBusy, RunStore, locked, read_jsonl
from conftest import ROOT

JOURNAL = "evaluations.jsonl"


def tear(path, record: dict) -> bytes:
    """Append the first half of ``record``'s line, as a kill in the middle of its write leaves it."""
    line = json.dumps(record).encode()
    fragment = line[: len(line) // 2]
    with open(path, "ab") as f:
        f.write(fragment)
    return fragment


def test_a_torn_last_line_is_cut_once_and_kept_so_every_resume_works(tmp_path):
    store = RunStore(tmp_path)
    store.append(JOURNAL, {"signature": "s0"})
    fragments = []
    for resume in range(1, 4):  # kill while writing, resume, write the next record: three times
        fragments.append(tear(store.path(JOURNAL), {"signature": f"torn{resume}", "pad": "x" * 40}))
        store = RunStore(tmp_path)  # a resumed process
        assert [r["signature"] for r in store.read(JOURNAL)] == [f"s{i}" for i in range(resume)]
        store.append(JOURNAL, {"signature": f"s{resume}"})
        assert [r["signature"] for r in store.read(JOURNAL)] == [f"s{i}" for i in range(resume + 1)]
    lines = store.path(JOURNAL).read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(x) for x in lines[:-1])
    # what was cut is kept beside the journal, one fragment a line
    assert (tmp_path / f"{JOURNAL}.torn").read_bytes() == b"".join(f + b"\n" for f in fragments)


def test_a_complete_last_record_without_its_newline_is_kept(tmp_path):
    p = tmp_path / JOURNAL
    p.write_text('{"signature": "a"}\n{"signature": "b"}')
    store = RunStore(tmp_path)
    store.append(JOURNAL, {"signature": "c"})
    assert [r["signature"] for r in store.read(JOURNAL)] == ["a", "b", "c"]
    assert not (tmp_path / f"{JOURNAL}.torn").exists()


def test_reading_never_writes_and_a_corrupt_middle_line_is_named(tmp_path):
    p = tmp_path / JOURNAL
    p.write_text('{"signature": "a"}\n{"signature": "b", "sco')
    before = p.read_bytes()
    assert [r["signature"] for r in RunStore(tmp_path).read(JOURNAL)] == ["a"]
    assert p.read_bytes() == before  # a reader (a test polling a live run, the report) changes nothing
    p.write_text('{"signature": "a"}\n{"signa{"signature": "b"}\n{"signature": "c"}\n')
    with pytest.raises(ValueError, match=f"{JOURNAL}:2: corrupt record"):
        read_jsonl(p)


def test_the_report_reads_a_run_with_a_torn_journal(tmp_path):
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml({"dataset": {"name": "cmd"}}))
    (tmp_path / "results.json").write_text(json.dumps({"signature": "abc", "table": []}))
    store = RunStore(tmp_path)
    store.append(JOURNAL, {"strategy": "none", "signature": "s0"})
    tear(store.path(JOURNAL), {"strategy": "cleaning", "signature": "s1"})
    (tmp_path / "agent").mkdir()
    tear(tmp_path / "agent" / "proposals.jsonl", {"round": 1, "strategies": ["cleaning"]})
    run = Run.load(tmp_path)
    assert list(run.evaluations) == ["none"] and run.proposals == []


def test_a_run_dir_is_held_by_one_process(tmp_path):
    with locked(tmp_path):
        with pytest.raises(RunDirBusy, match=f"{tmp_path} is in use by another autodp process \\(pid {os.getpid()}\\)"):
            with locked(tmp_path):
                pass
    with locked(tmp_path):  # released when the holder ends
        pass


def test_a_second_launch_into_a_busy_run_dir_fails_clearly_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    with locked(run_dir):  # as a launch in the same second, still running, holds it
        r = subprocess.run([sys.executable, "launch.py", "agent=heuristic", "logger=none", f"hydra.run.dir={run_dir}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "is in use by another autodp process" in r.stderr and "Traceback" not in r.stderr
    assert not (run_dir / "config.yaml").exists() and not (run_dir / JOURNAL).exists()


def test_a_fresh_run_dir_is_named_for_its_process():
    """Two launches in the same second get a dir each: the name ends in the process id."""
    code = ("import os, autodp; from hydra import compose, initialize_config_dir;"
            f"initialize_config_dir(config_dir='{ROOT / 'conf'}', version_base='1.3');"
            "print(os.getpid(), compose('config', return_hydra_config=True).hydra.run.dir)")
    pid, run_dir = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                  timeout=120, check=True).stdout.split()
    assert run_dir.startswith("outputs/") and run_dir.endswith(f"-{pid}")


# --- failed evaluations on resume ------------------------------------------------------------

def request() -> EvalRequest:
    return EvalRequest(strategy="none", train={}, val={}, target={}, pool={}, teams={}, finetune={}, eval={},
                       seed=0, out_dir="unused", seeds=2)


class Evaluator:
    """Scores every strategy; fails every processed one while ``broken``. Records what it ran."""

    def __init__(self, broken: bool):
        self.broken, self.ran = broken, []

    def __call__(self, req: EvalRequest) -> EvalResult:
        self.ran.append(req.strategy)
        if self.broken and req.strategy != "none":
            return EvalResult(req.strategy, req.signature, "failed", error="input file: bad row")
        return EvalResult(req.strategy, req.signature, "ok", score=-6.0, seed_scores=[-6.0, -6.0])


def search(store: RunStore, evaluate: Evaluator, **kw) -> Search:
    agent = build_agent({"client": None}, max_strategies=2, min_rounds=1)
    return Search(agent, request(), store, lambda fn, reqs: map(fn, reqs), evaluate, max_rounds=1, pick="top", **kw)


def test_failed_evaluations_are_retried_on_resume_unless_kept(tmp_path):
    store = RunStore(tmp_path / "run")
    first = Evaluator(broken=True)
    out = search(store, first).run()
    failed = [s for s in first.ran if s != "none"]
    assert failed and "failed" in out.stop_reason

    kept = Evaluator(broken=False)  # retry_failed=false: the journaled failures are replayed
    assert "failed" in search(store, kept, retry_failed=False).run().stop_reason and kept.ran == []

    fixed = Evaluator(broken=False)  # the default: the cause was fixed, they run again
    out = search(store, fixed).run()
    assert fixed.ran == failed and all(out.results[s].status == "ok" for s in failed)
    # the journal keeps both; a later resume takes the newest record of a signature
    assert [r["status"] for r in store.read(JOURNAL)].count("failed") == len(failed)
    again = Evaluator(broken=False)
    search(RunStore(tmp_path / "run"), again).run()
    assert again.ran == []


def test_a_failed_confirmation_arm_is_retried_on_resume(tmp_path):
    from autodp.confirm import confirm
    from autodp.strategy import Strategy, Team

    def evaluator(broken: bool, ran: list[str]):
        def evaluate(req: EvalRequest) -> EvalResult:
            ran.append(req.strategy)
            if broken and req.strategy != "none":
                return EvalResult(req.strategy, req.signature, "failed", error="input file: bad row")
            rows = [[-6.0 + 0.1 * seed] * 4 for seed in req.fit_seeds]
            return EvalResult(req.strategy, req.signature, "ok", score=-6.0, seed_scores=[r[0] for r in rows],
                              row_scores=rows)
        return evaluate

    def run(broken: bool, **kw) -> tuple[dict, list[str]]:
        ran: list[str] = []
        c = confirm(request(), {"path": "test.jsonl"}, Strategy.parse("cleaning"), [Team.CLEANING], RunStore(tmp_path),
                    lambda fn, reqs: map(fn, reqs), evaluator(broken, ran), 1e-4, **kw)
        return c, ran

    c, _ = run(broken=True)
    assert list(c["failed"]) == ["cleaning"]
    c, ran = run(broken=False, retry_failed=False)
    assert ran == [] and list(c["failed"]) == ["cleaning"]
    c, ran = run(broken=False)
    assert ran == ["cleaning"] and c["failed"] == {} and "cleaning" in c["arms"]
