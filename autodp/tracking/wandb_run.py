"""W&B tracking (conf/logger): one W&B run per search, grouped by sweep, job type = search method.

Per round (W&B step = round): each strategy's r, s_k = r_k - r_0, status, rows and cache hits as a
table, counts, the best s so far, the agent's decision and the round's seconds per stage. At the
end: the summary (best, stop reason, r_0, seconds per stage), the agent transcript as an artifact
and every evaluated strategy as a table. The timing grid of a multirun is a run of its own (job
type "grid") in the sweep's group, so is the methods table of a sweep over search methods (job
type "methods"), and evaluation jobs log to the same group (job type
"evaluate") when their request carries ``tracking`` (``logger.eval_runs``). task=compare logs its
win/tie/loss table the same way (job type "compare").

Offline whenever no API key is found, so a run never waits on the network; the files stay under
the run dir (``wandb sync <run_dir>/wandb/offline-run-*`` uploads them later) unless WANDB_DIR is
set. ``resume="allow"`` with ids derived from signatures: a resumed run continues its W&B run.

Privacy: only strategy names, numbers, counts, timings and the agent transcript (strategy names
and scores by construction) are logged, and W&B's console capture is off, because operators and
libraries print whatever they like.
"""
from __future__ import annotations

import hashlib
import logging
import netrc
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from autodp.accel import accel_name
from autodp.evaluate.request import EvalRequest, EvalResult
from autodp.resources import PROJECT_ROOT
from autodp.search import SearchOutcome
from autodp.store import RunStore
from autodp.tracking.summary import agent_answers, rows_table

log = logging.getLogger(__name__)
# The columns of the per-round and final strategy tables (rows from autodp.tracking.summary.rows_table).
COLUMNS = ("round", "strategy", "status", "r", "s", "se", "beyond_noise", "rows_in", "rows_out", "seconds", "score_cached",
           "ops_cached", "repeat", "error")
OP_COLUMNS = ("op", "team", "rows_in", "rows_out", "rows_changed", "seconds", "cached")


def has_api_key() -> bool:
    """WANDB_API_KEY, or a netrc entry for the W&B host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(configured: str) -> str:
    """``auto``: WANDB_MODE if set, else online. Online without an API key becomes offline, so
    that a compute node without credentials or network still records everything."""
    mode = (os.environ.get("WANDB_MODE") or "online") if configured == "auto" else configured
    if mode == "online" and not has_api_key():
        log.info("W&B: no API key (WANDB_API_KEY or netrc): logging offline, `wandb sync` uploads later")
        return "offline"
    return mode


def group_dir(run_dir: Path) -> Path:
    """The sweep dir of a multirun cell (the nearest ancestor holding Hydra's multirun.yaml, which
    a resumed cell finds as well), else the run dir itself."""
    run_dir = Path(run_dir).resolve()
    return next((d for d in run_dir.parents if (d / "multirun.yaml").exists()), run_dir)


def group_of(logger: Mapping[str, Any], path: Path) -> str:
    """``logger.group``, else the last two parts of the sweep or run dir: Hydra's dated layout
    (multirun/2026-11-23/18-10-00) gives '2026-11-23-18-10-00'."""
    return logger.get("group") or f"{path.parent.name}-{path.name}"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _init(logger: Mapping[str, Any], files_dir: Path, **kwargs: Any) -> Any:
    """A W&B run whose files go under ``files_dir`` (WANDB_DIR wins); several may be open in one
    process (a multirun's cells, in-process evaluation runs)."""
    if "wandb" not in sys.modules:
        # Before this process imports W&B, a WANDB_SERVICE in its environment is a parent's service
        # (a test runner's, a notebook's, a SLURM driver's on another node). This process starts its
        # own: in a shared one, the run of a search that was killed stays "in use" and its resume
        # is refused.
        os.environ.pop("WANDB_SERVICE", None)
    import wandb  # a second to import: only when tracking is on

    git = {"git_root": str(PROJECT_ROOT)} if (PROJECT_ROOT / ".git").exists() else {}
    files_dir.mkdir(parents=True, exist_ok=True)
    return wandb.init(project=logger["project"], entity=logger.get("entity"), tags=list(logger.get("tags") or []),
                      mode=resolve_mode(logger.get("mode") or "auto"),
                      dir=None if os.environ.get("WANDB_DIR") else str(files_dir),
                      resume="allow", reinit="create_new", settings=wandb.Settings(console="off", **git), **kwargs)


def _table(columns: tuple[str, ...], rows: list[Mapping[str, Any]]) -> Any:
    import wandb

    return wandb.Table(columns=list(columns), data=[[row.get(c) for c in columns] for row in rows],
                       allow_mixed_types=True)


class WandbTracker:
    """A ``SearchCallback`` that mirrors one search into one W&B run."""

    def __init__(self, run: Any, eval_tracking: dict[str, Any] | None):
        self.run = run
        self.eval_tracking = eval_tracking  # for EvalRequest.tracking; None: evaluations log nothing
        self._timings: dict[str, float] = {}

    def on_round(self, rnd: int, proposal: dict[str, Any], results: list[EvalResult], out: SearchOutcome) -> None:
        timings, self._timings = self._timings, dict(out.timings)
        if rnd < self.run.step:  # a resumed W&B run already holds the rounds replayed from the run store
            return
        rows = [r for r in rows_table(out) if r["round"] == rnd]
        ok = [r for r in rows if r["status"] == "ok"]
        scored = [s for s in (out.s(k) for k in out.results) if s is not None]
        m: dict[str, Any] = {
            "round": rnd, "decision": proposal["decision"], "proposed": len(rows), "ok": len(ok),
            "failed": len(rows) - len(ok), "repeats": sum(r["repeat"] for r in rows),
            "score_cached": sum(r["score_cached"] for r in rows), "ops_cached": sum(r["ops_cached"] for r in rows),
            "r0": out.r0, "best_s": max(scored), "round_strategies": _table(COLUMNS, rows)}
        if ok:
            m.update(r_max=max(r["r"] for r in ok), s_max=max(r["s"] for r in ok))
        m.update({f"time/{k}": v - timings.get(k, 0.0) for k, v in out.timings.items()})
        self.run.log(m, step=rnd, commit=True)  # now, not when the next round arrives

    def finish(self, out: SearchOutcome, store: RunStore) -> None:
        """After the timings are complete: summary, strategies table, transcript artifact."""
        import wandb

        last = out.rounds[-1] if out.rounds else {"round": 0, "decision": "continue"}
        final: dict[str, Any] = {"strategies": _table(COLUMNS, rows_table(out))}
        if last["decision"] != "continue":  # the method's stop, a round no callback saw
            final.update(round=last["round"], decision=last["decision"])
        self.run.log(final, step=max(last["round"], self.run.step))
        sources, reprompts = agent_answers(out.rounds)
        self.run.summary.update({
            "best": out.best.key, "best_s": out.s(out.best.key), "best_se": out.se(out.best.key), "pick": out.pick,
            "pick_reason": out.pick_reason, "agent_best": out.agent_best, "threshold_se": out.threshold,
            "se_df": out.df, "repeat_proposals": out.repeat_proposals, "stop_reason": out.stop_reason, "r0": out.r0,
            "test": out.confirmation,
            "evaluations": len(out.results), "agent_rounds": sources, "reprompts": reprompts,
            "timings": out.timings})
        files = [store.path(p) for p in ("agent/transcript.jsonl", "agent/proposals.jsonl")]
        if any(f.exists() for f in files):
            art = wandb.Artifact(f"agent-{self.run.id}", type="agent-transcript",
                                 description="the agent's prompts, answers and proposals: strategy names and scores")
            for f in files:
                if f.exists():
                    art.add_file(str(f), name=f.name)
            self.run.log_artifact(art)
        self.run.finish()

    def abort(self) -> None:
        """The search raised: mark the W&B run failed now rather than at interpreter exit."""
        self.run.finish(exit_code=1)


def build_tracker(logger: DictConfig, cfg: DictConfig, run_dir: Path, sig: str) -> WandbTracker | None:
    """The search's W&B run from ``logger`` (conf/logger); None for ``logger=none``."""
    if logger.kind == "none":
        return None
    if logger.kind != "wandb":
        raise ValueError(f"logger.kind={logger.kind!r}: known kinds are wandb and none")

    lg = OmegaConf.to_container(logger, resolve=True)
    run_dir = Path(run_dir).resolve()
    group = group_of(lg, group_dir(run_dir))
    # The signature names the config, the run dir's hash the run store: a resumed run continues
    # its W&B run, the same config run again elsewhere gets a run of its own.
    run_id = f"{sig}-{_short_hash(str(run_dir))}"
    config = {**OmegaConf.to_container(cfg, resolve=True), "signature": sig, "run_dir": str(run_dir)}
    run = _init(lg, run_dir, group=group, job_type=cfg.search.method, id=run_id,
                name=f"{cfg.dataset.name}-{accel_name(cfg)}-{sig}", config=config)
    eval_tracking = {**lg, "group": group, "dir": str(run_dir), "search_run": run_id} if lg.get("eval_runs") else None
    return WandbTracker(run, eval_tracking)


def tracked_evaluation(req: EvalRequest, evaluate: Callable[[EvalRequest], EvalResult]) -> EvalResult:
    """``evaluate(req)`` as a W&B run (job type "evaluate") in the search's group, e.g. inside a
    SLURM job. A requeued job continues the same W&B run; a W&B failure costs the record, never
    the evaluation."""
    t = req.tracking or {}
    try:
        run = _init(t, Path(t["dir"]), group=t["group"], job_type="evaluate",
                    id=f"{req.signature}-{_short_hash(t['search_run'])}", name=f"evaluate-{req.strategy}",
                    config={"strategy": req.strategy, "signature": req.signature, "search_run": t["search_run"]})
    except Exception as e:  # noqa: BLE001 - see the docstring
        log.warning("W&B: evaluation of %s is not tracked: %s", req.strategy, e)
        return evaluate(req)
    res = evaluate(req)
    run.log({"status": res.status, "score": res.score, "rows_in": res.rows_in, "rows_out": res.rows_out,
             "score_cached": res.score_cached, "ops_cached": sum(bool(op.get("cached")) for op in res.ops),
             **{f"metrics/{k}": v for k, v in res.metrics.items() if isinstance(v, (int, float))},
             **{f"time/{k}": v for k, v in res.timings.items()},
             "ops": _table(OP_COLUMNS, res.ops)})
    run.summary.update({"error": res.error})  # written by autodp for the agent: no sample text
    run.finish()
    return res


def log_sweep_table(sweep: Path, logger: DictConfig, kind: str, name: str, columns: tuple[str, ...],
                     rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """A table over runs or arms (a sweep's timing grid or methods table, a compare's pairs) and its
    ``<kind>.png`` in a W&B run of their own (job type ``kind``) in the group of ``sweep``."""
    import wandb

    lg = OmegaConf.to_container(logger, resolve=True)
    run = _init(lg, sweep, group=group_of(lg, sweep), job_type=kind, id=f"{kind}-{_short_hash(str(sweep))}", name=name)
    png = sweep / f"{kind}.png"
    run.log({kind: _table(columns, rows), **({f"{kind}_plot": wandb.Image(str(png))} if png.exists() else {})})
    run.summary.update(summary)
    run.finish()
