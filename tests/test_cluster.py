"""Executors against real submitit jobs: local subprocesses, and the real localhost SLURM cluster
(slurm/local-cluster.sh). A job that raises, one that is hard-killed, one that dies once and one
that times out end as autodp/cluster/jobs.py says; a resumed driver re-attaches to its jobs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
from omegaconf import OmegaConf

from autodp.cluster import build_executor
from autodp.evaluate.request import EvalRequest, EvalResult
from autodp.store import RunStore
from conftest import ROOT
from test_search import ONE_SEED

# The jobs unpickle the functions below: ship them by value, this file is not importable there.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def request(strategy: str, out_dir: Path) -> EvalRequest:
    return EvalRequest(strategy=strategy, train={}, val={}, target={}, pool={}, teams={}, finetune={}, eval={},
                       seed=0, out_dir=str(out_dir))


def faulty(req: EvalRequest) -> EvalResult:
    """Behaves as the strategy's name says; the others succeed with a score."""
    marker = Path(req.out_dir) / f"{req.strategy}.started"
    first = not marker.exists()
    marker.touch()
    if req.strategy == "cleaning":
        raise ValueError("a message that could quote sample text")
    if req.strategy == "selection" or (req.strategy == "generation" and first):
        os.kill(os.getpid(), signal.SIGKILL)
    if req.strategy == "optimization":
        time.sleep(3600)
    return EvalResult(strategy=req.strategy, signature=req.signature, status="ok", score=-1.0)


def cluster_cfg(kind: str, tmp_path: Path, **over):
    cfg = OmegaConf.load(ROOT / "conf" / "cluster" / f"{kind}.yaml")
    cfg.merge_with({"poll_s": 0.5, "max_retries": 1, "timeout_min": 1, **over})
    if kind == "slurm":
        cfg.merge_with({"gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "signal_delay_s": 10})
    return cfg


def run(kind: str, tmp_path: Path, strategies: list[str]) -> tuple[dict[str, EvalResult], list[dict]]:
    store = RunStore(tmp_path / "run")
    reqs = [request(s, tmp_path) for s in strategies]
    results = {r.strategy: r for r in build_executor(cluster_cfg(kind, tmp_path), store).map(faulty, reqs)}
    return results, store.read("jobs.jsonl")


def check_faults(results: dict[str, EvalResult], journal: list[dict]) -> None:
    """Each strategy of ``faulty`` that ran ended as the module docstring says."""
    attempts = {s: sum(1 for j in journal if j["strategy"] == s) for s in results}
    expected = {"none": ("ok", 1), "cleaning": ("failed", 1), "selection": ("failed", 2),
                "generation": ("ok", 2), "optimization": ("failed", 2)}  # max_retries=1
    assert {s: (r.status, attempts[s]) for s, r in results.items()} == {s: expected[s] for s in results}
    assert all(r.score == -1.0 for r in results.values() if r.status == "ok")
    assert all(r.score is None for r in results.values() if r.status == "failed")
    if "cleaning" in results:  # raised: not retried, and the agent sees no message
        assert results["cleaning"].error == "evaluation job raised ValueError"
        assert "a message that could quote sample text" in results["cleaning"].traceback  # the run store keeps it
    for s in ("selection", "optimization"):  # hard-killed, over the time limit
        if s in results:
            assert "without a result" in results[s].error


@pytest.mark.slow
def test_local_jobs_fail_retry_and_reattach(tmp_path):
    strategies = ["none", "cleaning", "selection", "generation"]
    results, journal = run("submitit_local", tmp_path, strategies)
    check_faults(results, journal)
    assert len(results) == 4
    # A second driver on the same run store re-attaches to the finished jobs: nothing is resubmitted.
    again, journal2 = run("submitit_local", tmp_path, ["none", "generation"])
    assert journal2 == journal
    assert {k: (r.status, r.score) for k, r in again.items()} == {"none": ("ok", -1.0), "generation": ("ok", -1.0)}


def only_baseline_works(req: EvalRequest) -> EvalResult:
    if req.strategy != "none":
        raise RuntimeError("every processing job crashes")
    return EvalResult(strategy=req.strategy, signature=req.signature, status="ok", score=-2.0)


def cleaning_crashes(req: EvalRequest) -> EvalResult:
    if req.strategy == "cleaning":
        raise RuntimeError("this job crashes")
    return EvalResult(strategy=req.strategy, signature=req.signature, status="ok", score=-2.0 + 0.01 * len(req.strategy))


class Recording:
    """The rule-based agent, keeping the feedback each round showed it."""

    def __init__(self):
        from autodp.agent import build_agent
        self.agent, self.seen = build_agent({"client": None}, max_strategies=3, min_rounds=2), []

    def propose(self, rnd, history, note=None):
        self.seen.append(list(history))
        return self.agent.propose(rnd, history, note)


def search(tmp_path: Path, fn, agent) -> tuple:
    from autodp.search import Search

    store = RunStore(tmp_path / "run")
    executor = build_executor(cluster_cfg("submitit_local", tmp_path), store)
    return Search(agent, request("none", tmp_path), store, executor.map, fn, max_rounds=3).run(), store


@pytest.mark.slow
def test_a_failed_job_is_reported_to_the_agent_as_failed_and_the_search_goes_on(tmp_path):
    agent = Recording()
    out, _ = search(tmp_path, cleaning_crashes, agent)
    assert out.stop_reason == "reached max_rounds=3"
    told = {f.strategy.key: (f.score, f.error) for f in agent.seen[1][0].results}
    assert told["cleaning"] == (None, "evaluation job raised RuntimeError")
    assert all(score is not None for key, (score, _) in told.items() if key != "cleaning")


@pytest.mark.slow
def test_a_round_whose_jobs_all_fail_ends_the_search_without_a_fake_score(tmp_path):
    out, store = search(tmp_path, only_baseline_works, Recording())
    assert out.stop_reason == "every strategy of round 1 failed"
    assert [r["round"] for r in out.rounds] == [1]
    failed = [r for k, r in out.results.items() if k != "none"]
    assert failed and all(r.status == "failed" and r.score is None for r in failed)
    assert all(r.error == "evaluation job raised RuntimeError" for r in failed)
    assert out.best.key == "none"  # no fake score: the baseline stays the best
    logged = store.read("evaluations.jsonl")
    assert {e["strategy"]: e["status"] for e in logged} == {k: r.status for k, r in out.results.items()}


def preempted_once(req: EvalRequest) -> EvalResult:
    marker = Path(req.out_dir) / "preempt.started"
    if not marker.exists():
        marker.touch()
        time.sleep(120)  # the test preempts the job here
        return EvalResult(strategy=req.strategy, signature=req.signature, status="ok", score=-9.0)
    return EvalResult(strategy=req.strategy, signature=req.signature, status="ok", score=-1.0)


@pytest.mark.slow
def test_a_preempted_job_is_requeued_by_submitit_not_retried(tmp_path):
    """SIGUSR2 is what SLURM sends on preemption (submitit's signal): the Checkpointable task is
    requeued with the same request under the same job id and runs again."""
    import threading

    store = RunStore(tmp_path / "run")
    cfg = cluster_cfg("submitit_local", tmp_path, timeout_min=60)  # far from the time limit: preempted
    results: list[EvalResult] = []
    t = threading.Thread(target=lambda: results.extend(
        build_executor(cfg, store).map(preempted_once, [request("cleaning", tmp_path)])))
    t.start()
    deadline = time.time() + 60
    while not (tmp_path / "preempt.started").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # let the task install submitit's signal handlers
    (job,) = store.read("jobs.jsonl")
    # a local job id is its controller's pid; like SLURM, signal the task it runs
    (task,) = Path(f"/proc/{job['job_id']}/task/{job['job_id']}/children").read_text().split()
    os.kill(int(task), signal.SIGUSR2)
    t.join(90)
    assert [(r.status, r.score) for r in results] == [("ok", -1.0)]
    assert store.read("jobs.jsonl") == [job]  # requeued in place: no second submission


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_array_jobs_fail_retry_time_out_and_reattach(slurm_cluster, tmp_path):
    strategies = ["none", "cleaning", "selection", "generation", "optimization"]
    results, journal = run("slurm", tmp_path, strategies)
    check_faults(results, journal)
    assert len(results) == 5
    first = [j["job_id"] for j in journal if j["attempt"] == 1]
    assert len({j.split("_")[0] for j in first}) == 1 and all("_" in j for j in first)  # one array
    states = sacct_states(first)
    assert states[first[strategies.index("none")]] == "COMPLETED"
    # submitit's SIGUSR2, signal_delay_s before the time limit, ended it: a time limit, not a crash
    assert states[first[strategies.index("optimization")]] in ("FAILED", "TIMEOUT")
    assert "timed-out" in results["optimization"].traceback
    again, journal2 = run("slurm", tmp_path, ["none", "generation"])
    assert journal2 == journal and {r.status for r in again.values()} == {"ok"}


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                         capture_output=True, text=True, check=True).stdout
    return {line.split("|")[0]: line.split("|")[1].split()[0] for line in out.splitlines() if line}


# Two cheap teams (one LLM call per operator), so that a round has several strategies: an array.
SEARCH = ["dataset.train_limit=80", "eval.val_limit=40", "search.max_rounds=2", "search.min_rounds=2",
          *ONE_SEED, "search.confirm=false",
          "teams.generation=[]", "teams.selection=[]", "llm.max_rows=1", "agent=heuristic", "cluster=slurm", "cluster.gpus_per_node=0",
          "cluster.cpus_per_task=1", "cluster.mem_gb=2", "cluster.poll_s=1"]


def launch(run_dir: Path, *extra: str, wait: bool = True):
    cmd = [sys.executable, "launch.py", *SEARCH, *extra, f"hydra.run.dir={run_dir}"]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]


@pytest.mark.slow
@pytest.mark.slurm
def test_a_search_runs_its_evaluations_as_slurm_array_jobs(slurm_cluster, tmp_path):
    run_dir = tmp_path / "run"
    launch(run_dir, "search.max_rounds=1", "search.min_rounds=1")  # none, then one round: a lone job and an array
    results = json.loads((run_dir / "results.json").read_text())
    evals = [json.loads(x) for x in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    jobs = RunStore(run_dir).read("jobs.jsonl")
    assert results["best"] and all(e["status"] == "ok" for e in evals)
    assert sorted(e["signature"] for e in evals) == sorted(j["signature"] for j in jobs)  # each ran as a job
    ids, deadline = [j["job_id"] for j in jobs], time.time() + 60
    while set(sacct_states(ids).values()) != {"COMPLETED"} and time.time() < deadline:
        time.sleep(1)  # a job's result exists a moment before SLURM records its end
    assert set(sacct_states(ids).values()) == {"COMPLETED"}
    # a round of several new strategies is one array (submitit submits a lone request as a plain job)
    arrays = {j["job_id"].split("_")[0] for j in jobs if "_" in j["job_id"]}
    assert len(arrays) == 1 and sum("_" in j["job_id"] for j in jobs) >= 2


@pytest.mark.slow
@pytest.mark.slurm
def test_a_killed_driver_reattaches_to_its_submitted_jobs(slurm_cluster, tmp_path):
    run_dir = tmp_path / "run"
    one_round = ("search.max_rounds=1", "search.min_rounds=1")  # none, then an array of 2: enough to kill in
    driver = launch(run_dir, *one_round, wait=False)
    journal = run_dir / "jobs.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and sum(1 for _ in RunStore(run_dir).read("jobs.jsonl")) < 2:
        assert driver.poll() is None, "the driver ended before submitting a round"
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # jobs of round 1 are queued or running
    driver.wait()
    submitted = RunStore(run_dir).read("jobs.jsonl")
    launch(run_dir, *one_round, f"resume={run_dir}")
    after = RunStore(run_dir).read("jobs.jsonl")
    assert after[:len(submitted)] == submitted
    # every request submitted before the kill was followed, not submitted again
    before = {j["signature"] for j in submitted}
    assert all(j["signature"] not in before for j in after[len(submitted):])
    assert journal.exists() and (run_dir / "results.json").exists()



def test_a_job_uses_no_more_threads_than_the_cpus_it_was_given(monkeypatch):
    """Four 1-CPU evaluation jobs on a 2-core node, each with torch's default of 2 threads, ran a
    search 2x slower than with 1 thread each (228 s against 107 s)."""
    from autodp.resources import cpu_threads

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert cpu_threads(None) == cores and cpu_threads(1) == 1 and cpu_threads(cores + 4) == cores
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert cpu_threads(None) == 1 and cpu_threads(2) == 1


def test_a_cache_entry_is_built_by_one_process_while_the_others_wait(tmp_path):
    """The jobs of one array on a fresh cache each converted Gemma (or pre-warmed the base) at the
    same time on the same cores; under cache_lock the second waits and finds the entry built."""
    import threading

    from autodp.resources import cache_lock

    entry, built, log = tmp_path / "entry", [], []

    def build(name: str) -> None:
        with cache_lock(entry):
            log.append(f"{name} in")
            if not entry.exists():
                time.sleep(0.5)
                entry.mkdir()
                built.append(name)
            log.append(f"{name} out")

    threads = [threading.Thread(target=build, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(built) == 1 and log[0][0] == log[1][0]  # one held the lock from "in" to "out" alone
