"""The localhost SLURM cluster (slurm/local-cluster.sh) and what runs on it: submitit jobs and
arrays side by side, Hydra multirun cells (hydra/launcher=slurm) and the driver's sbatch script,
each checked in the accounting database."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from autodp.store import RunStore
from conftest import ROOT, SLURM_DIR, slurm_unavailable
from test_search import ONE_SEED, SMALL

# These tests are about where the search runs, not how long it searches.
ONE_ROUND = ["search.max_rounds=1", "search.min_rounds=1", *ONE_SEED]

# The jobs unpickle meet() below: ship it by value, this file is not importable there.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
SCRIPT = ROOT / "slurm" / "local-cluster.sh"


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """Final states from the accounting database. submitit has a result as soon as the job's
    Python returned, but SLURM ends the job a moment later and slurmctld reports to slurmdbd
    asynchronously: wait (at most 60 s) until every job is there and done."""
    deadline = time.time() + 60
    while True:
        r = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                           capture_output=True, text=True, timeout=60, check=True)
        states = dict(line.split("|") for line in r.stdout.split())
        done = set(states) >= set(job_ids) and not set(states.values()) & {"PENDING", "RUNNING", "COMPLETING"}
        if done or time.time() > deadline:
            return states
        time.sleep(0.5)


def meet(folder: str, name: str, expected: int) -> tuple[str, bool]:
    """Announces itself in ``folder``, then waits (at most 60 s) until ``expected`` jobs have:
    True only if they all ran at the same time."""
    Path(folder, name).touch()
    deadline = time.time() + 60
    while time.time() < deadline:
        if len(list(Path(folder).iterdir())) >= expected:
            return os.environ["SLURM_JOB_ID"], True
        time.sleep(0.2)
    return os.environ["SLURM_JOB_ID"], False


@pytest.mark.slurm
def test_start_when_up_changes_nothing(slurm_cluster):
    if slurm_cluster != SLURM_DIR / "etc" / "slurm.conf" or not os.access(SLURM_DIR, os.W_OK):
        slurm_unavailable(f"SLURM_CONF={slurm_cluster} is not a cluster of slurm/local-cluster.sh that we may manage")

    def daemons() -> list[str]:
        return subprocess.run([SCRIPT, "status"], capture_output=True, text=True, timeout=60).stdout.splitlines()[:5]

    before = daemons()
    assert all("running (pid" in line for line in before), before
    r = subprocess.run([SCRIPT, "start"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"export SLURM_CONF={slurm_cluster}\n"
    assert r.stderr.count("already running") == 5, r.stderr
    assert daemons() == before


@pytest.mark.slurm
def test_a_job_and_an_array_run_with_their_tasks_side_by_side(slurm_cluster, tmp_path):
    ex = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    ex.update_parameters(timeout_min=5, cpus_per_task=1, mem_gb=1)
    (tmp_path / "one").mkdir()
    (tmp_path / "four").mkdir()
    t0 = time.time()
    job = ex.submit(meet, str(tmp_path / "one"), "job", 1)
    assert job.result() == (job.job_id, True)
    array = ex.map_array(meet, [str(tmp_path / "four")] * 4, ["a", "b", "c", "d"], [4] * 4)
    # Four one-CPU tasks meet only if the node runs them at once (it declares at least 4 CPUs).
    assert [j.result()[1] for j in array] == [True] * 4
    assert len({j.result()[0] for j in array}) == 4
    ids = [job.job_id] + [j.job_id for j in array]
    assert sacct_states(ids) == {i: "COMPLETED" for i in ids}
    print(f"job + array of 4 on SLURM: {time.time() - t0:.1f} s")


@pytest.mark.slow
@pytest.mark.slurm
def test_hydra_multirun_cells_run_as_slurm_jobs(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    t0 = time.time()
    # Each cell's search submits its evaluations as jobs from inside the cell's job. The cells ask
    # for memory per CPU and the evaluations per node: inherited SLURM_* settings would make the
    # inner jobs fail (slurm/README.md).
    nested = ["cluster=slurm", "cluster.gpus_per_node=0", "cluster.cpus_per_task=1", "cluster.mem_gb=2",
              "cluster.poll_s=1", "hydra.launcher.mem_gb=null", "hydra.launcher.mem_per_cpu=1G"]
    r = subprocess.run([sys.executable, "launch.py", "-m", "dataset=cmd,cmedqa2", "hydra/launcher=slurm",
                        "hydra.launcher.timeout_min=30", *SMALL, "agent=heuristic", *nested, *ONE_ROUND,
                        f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    results = sorted(sweep.glob("*/results.json"))
    assert sorted(OmegaConf.load(p.parent / "config.yaml").dataset.name for p in results) == ["cmd", "cmedqa2"]
    assert all(json.loads(p.read_text())["stop_reason"] for p in results)
    for cell in (p.parent for p in results):
        evals, jobs = RunStore(cell).read("evaluations.jsonl"), RunStore(cell).read("jobs.jsonl")
        assert evals and all(e["status"] == "ok" for e in evals)
        assert sorted(e["signature"] for e in evals) == sorted(j["signature"] for j in jobs)
    # Each cell was a task of one SLURM job array, and the accounting database saw it finish.
    tasks = sorted(d.name for d in (sweep / ".submitit").iterdir() if d.is_dir() and "_" in d.name)
    assert len(tasks) == 2 and len({t.split("_")[0] for t in tasks}) == 1, tasks
    assert sacct_states(tasks) == {t: "COMPLETED" for t in tasks}
    # conf/hydra/launcher/slurm.yaml reached sbatch.
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --job-name=autodp-sweep" in script and "HF_HUB_OFFLINE=1" in script
    # The timing-grid callback ran in the submitting process once the jobs were done.
    grid = (sweep / "grid.csv").read_text()
    assert "cmd," in grid and "cmedqa2," in grid
    print(f"multirun of 2 cells through SLURM: {time.time() - t0:.1f} s")


@pytest.mark.slow
@pytest.mark.slurm
def test_driver_sbatch_runs_a_search_and_resumes_its_run_dir(slurm_cluster, tmp_path):
    run_dir = tmp_path / "run"
    # The local cluster has no GPU partition: the driver runs its evaluations in-process.
    env = {**os.environ, "AUTODP_CLUSTER": "local", "AUTODP_RUN_DIR": str(run_dir), "AUTODP_VENV": sys.prefix}

    def driver() -> str:
        r = subprocess.run(["sbatch", "--wait", "--parsable", "--mem=2G", f"--output={tmp_path}/driver-%j.out",
                            "slurm/driver.sbatch", *SMALL, "agent=heuristic", *ONE_ROUND],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        job_id = r.stdout.strip()
        log = (tmp_path / f"driver-{job_id}.out").read_text() if job_id else ""
        assert r.returncode == 0, r.stderr + log[-5000:]
        return job_id

    first = driver()
    evaluations = (run_dir / "evaluations.jsonl").read_text()
    best = json.loads((run_dir / "results.json").read_text())["best"]
    # The same run dir again: the driver resumes the finished run and evaluates nothing anew.
    second = driver()
    assert "reusing" in (tmp_path / f"driver-{second}.out").read_text()
    assert (run_dir / "evaluations.jsonl").read_text() == evaluations
    assert json.loads((run_dir / "results.json").read_text())["best"] == best
    assert sacct_states([first, second]) == {first: "COMPLETED", second: "COMPLETED"}


def test_h100_example_is_a_cluster_option_with_the_keys_of_cluster_slurm(tmp_path):
    reference = ROOT / "conf" / "cluster" / "slurm.yaml"
    if not reference.exists():
        pytest.skip("conf/cluster/slurm.yaml does not exist yet: nothing to compare the example with")
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "h100.yaml").write_text((ROOT / "slurm" / "examples" / "h100.yaml").read_text())
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["cluster=h100", f"hydra.searchpath=[file://{tmp_path}]"])
    assert cfg.cluster.submitit == "slurm"
    assert sorted(cfg.cluster) == sorted(OmegaConf.load(reference))


@pytest.mark.parametrize("require, outcome", [("0", "1 skipped"), ("1", "1 error")])
def test_a_slurm_test_without_a_cluster_fails_only_when_required(tmp_path, require, outcome):
    env = {**os.environ, "SLURM_CONF": str(tmp_path / "no-slurm.conf"), "AUTODP_REQUIRE_SLURM": require}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/test_slurm.py::test_start_when_up_changes_nothing"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert outcome in r.stdout, r.stdout[-2000:]
    assert (r.returncode == 0) == (require == "0")
