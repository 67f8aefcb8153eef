"""Evaluations, and task=compare's arms, as submitit jobs: on SLURM (``cluster=slurm``) or as
local subprocesses (``cluster=submitit_local``). A round's requests go out together as one job
array, and results are yielded as their jobs finish.

Faults, so that one bad job never stops the search and never gives the agent a made-up score:
- the job's function raised: the strategy is recorded failed, with the job's traceback in the
  run store (a rerun would raise again, so it is not retried);
- the job ended without a result (killed, out of memory, node failure, time limit): it is
  resubmitted up to ``max_retries`` times, then recorded failed;
- preemption: the task is ``Checkpointable``, so submitit requeues it with the same request;
  the rerun reuses what the evaluation had stored (with CRM on: processed prefixes and scores);
- the driver: every submission is journaled in the run store (``jobs.jsonl``); a resumed driver
  re-attaches to the latest job of each request it still needs and resubmits only the requests
  whose job is gone without a result.
"""
from __future__ import annotations

import logging
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError
from tqdm.auto import tqdm

from autodp.store import RunStore

log = logging.getLogger(__name__)
JOURNAL = "jobs.jsonl"
# submitit ends a job that hit its time limit by raising this inside it (not requeued, as
# max_num_timeout=0): a time limit, not an error of the evaluation, so it is retried.
TIMED_OUT = "Job not requeued because: timed-out"


class Request(Protocol):
    """What a job runs on: an evaluation (autodp/evaluate/request.py) or a compare arm (autodp/compare/job.py)."""
    strategy: str  # named in logs, the job journal and the progress bar

    @property
    def signature(self) -> str: ...  # the journal's key: a resumed driver re-attaches by it

    def failed(self, error: str, trace: str) -> Any: ...  # the result of a job that left none


class JobTask(submitit.helpers.Checkpointable):
    """What a job runs: ``fn(request)``. Checkpointable: a preempted job is requeued, not lost."""

    def __init__(self, fn: Callable[[Request], Any]):
        self.fn = fn

    def __call__(self, req: Request) -> Any:
        return self.fn(req)


@dataclass
class _Running:
    req: Request
    job: submitit.Job
    attempt: int  # 1 for the first submission


def parameters(cfg: Any) -> dict[str, Any]:
    """submitit's parameters from the ``cluster`` config (unset keys left to submitit)."""
    p = {"name": "autodp-eval", "timeout_min": cfg.timeout_min, "cpus_per_task": cfg.cpus_per_task,
         "gpus_per_node": cfg.gpus_per_node, "mem_gb": cfg.get("mem_gb")}
    if cfg.submitit == "slurm":
        p.update(slurm_partition=cfg.partition, slurm_account=cfg.account, slurm_qos=cfg.qos,
                 slurm_setup=list(cfg.setup), slurm_additional_parameters=dict(cfg.additional_parameters),
                 slurm_array_parallelism=cfg.array_parallelism, slurm_signal_delay_s=cfg.signal_delay_s)
    return {k: v for k, v in p.items() if v is not None}


@contextmanager
def _outside_job() -> Iterator[None]:
    """Submit as if from outside any job. A driver that is itself a SLURM job (a sweep cell, or
    slurm/driver.sbatch) would pass its own SLURM_* settings on to the evaluation jobs, and sbatch
    refuses e.g. two kinds of memory request; SLURM_CONF, which names the cluster, is kept."""
    conf = os.environ.get("SLURM_CONF")
    with submitit.helpers.clean_env():
        if conf:
            os.environ["SLURM_CONF"] = conf
        yield


def _exception_name(trace: str) -> str:
    """The exception's class from a traceback's last line; its message may quote data, so it is
    not shown to the agent."""
    names = re.findall(r"^([A-Za-z_][\w.]*)(?::|$)", trace, flags=re.M)
    return names[-1] if names else "unknown error"


class JobExecutor:
    def __init__(self, cfg: Any, store: RunStore):
        self.cfg, self.store = cfg, store
        self.cluster = cfg.submitit
        folder = Path(cfg.folder or store.path("jobs"))
        # No requeue on a time limit: this executor retries it like any other death, within max_retries.
        self.executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster,
                                              **{f"{self.cluster}_max_num_timeout": 0})
        self.executor.update_parameters(**parameters(cfg))
        self.folder = folder

    def map(self, fn: Callable[[Request], Any], requests: Sequence[Request],
            desc: str = "evaluate") -> Iterator[Any]:
        if not requests:
            return
        running, new = [], []
        submitted = self._journal()
        for req in requests:
            past = submitted.get(req.signature, [])
            if past:  # a previous driver submitted it: follow that job instead of starting over
                job_cls = submitit.SlurmJob if self.cluster == "slurm" else submitit.LocalJob
                running.append(_Running(req, job_cls(self.folder, past[-1]), len(past)))
                log.info("re-attached %s to job %s (attempt %d)", req.strategy, past[-1], len(past))
            else:
                new.append((req, 1))
        running += self._submit(fn, new)
        with tqdm(total=len(requests), desc=desc, unit="strategy", leave=False) as bar:
            while running:
                for run in [r for r in running if r.job.done()]:
                    running.remove(run)
                    result = self._result(run)
                    if result is None:
                        running += self._submit(fn, [(run.req, run.attempt + 1)])
                        continue
                    bar.update(1)
                    yield result
                bar.set_postfix(running=len(running))
                if running:
                    time.sleep(self.cfg.poll_s)

    def _submit(self, fn: Callable[[Request], Any], items: list[tuple[Request, int]]) -> list[_Running]:
        if not items:
            return []
        with _outside_job():
            jobs = self.executor.map_array(JobTask(fn), [req for req, _ in items])
        for (req, attempt), job in zip(items, jobs):
            self.store.append(JOURNAL, {"signature": req.signature, "strategy": req.strategy,
                                        "job_id": job.job_id, "attempt": attempt})
        log.info("submitted %d evaluation job(s): %s", len(jobs), ", ".join(j.job_id for j in jobs))
        return [_Running(req, job, attempt) for (req, attempt), job in zip(items, jobs)]

    def _result(self, run: _Running) -> Any | None:
        """The job's result, a failed result, or None when the job should be resubmitted."""
        try:
            return run.job.result()
        except FailedJobError as e:
            if TIMED_OUT not in str(e):
                log.warning("job %s (%s) raised; recorded as failed", run.job.job_id, run.req.strategy)
                return run.req.failed(f"evaluation job raised {_exception_name(str(e))}", str(e))
            return self._retry_or_fail(run, e)
        except UncompletedJobError as e:
            return self._retry_or_fail(run, e)

    def _retry_or_fail(self, run: _Running, e: UncompletedJobError) -> Any | None:
        state = run.job.state
        if run.attempt <= self.cfg.max_retries:
            log.warning("job %s (%s) ended without a result (state %s): resubmitting, attempt %d of %d",
                        run.job.job_id, run.req.strategy, state, run.attempt + 1, self.cfg.max_retries + 1)
            return None
        return run.req.failed(f"evaluation job ended without a result (state {state}) "
                                f"after {run.attempt} attempt(s)", str(e))

    def _journal(self) -> dict[str, list[str]]:
        """Job ids submitted so far, by request signature, oldest first."""
        out: dict[str, list[str]] = {}
        for rec in self.store.read(JOURNAL):
            out.setdefault(rec["signature"], []).append(rec["job_id"])
        return out
