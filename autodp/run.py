"""Run one task from a composed config: the search (Figure 1), journaled in the Hydra run dir."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import autodp.ops  # noqa: F401 - registers the operators
from autodp.accel.dps import duplicate_groups, sample_rows
from autodp.apply import export
from autodp.accel.screening import ScreeningModel, screening_model_path
from autodp.agent import build_agent
from autodp.cluster import build_executor
from autodp.compare.task import run_compare
from autodp.data.io import atomic_write, load_spec, write_rows
from autodp.confirm import confirm
from autodp.config_checks import ConfigError, check_config
from autodp.data.specs import DataSpecs, data_specs, heldout_test_spec, pinned
from autodp.evaluate.evaluator import evaluate
from autodp.evaluate.request import EvalRequest
from autodp.ops.teams import available_teams, scale_teams
from autodp.process import StreamingEngine, build_engine
from autodp.search import Context, Proposer, Search
from autodp.store import RunStore, locked
from autodp.strategy import Strategy, Team
from autodp.tracking.summary import report
from autodp.tracking.wandb_run import build_tracker

log = logging.getLogger(__name__)
# Keys that change where or how loudly a run reports, or what input it refuses, not what it
# computes (Dora's rule).
NON_IDENTITY_KEYS = ("resume", "retry_failed", "max_row_bytes", "log_level", "cluster", "process", "cache", "logger")


def signature(cfg: DictConfig) -> str:
    c = OmegaConf.to_container(cfg, resolve=True)
    blob = {k: v for k, v in c.items() if k not in NON_IDENTITY_KEYS}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def load_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """A fresh run saves its config; a resumed one continues with the config it was started with
    (and this invocation's ``retry_failed``). Either is checked before any work."""
    saved = run_dir / "config.yaml"
    if cfg.resume is None:
        check_config(cfg)
        with atomic_write(saved) as f:
            f.write(OmegaConf.to_yaml(cfg, resolve=True))
        return cfg
    if not saved.exists():
        raise ConfigError(f"resume={cfg.resume}: no config.yaml there, not an autodp run dir")
    old = OmegaConf.load(saved)
    if signature(old) != signature(cfg):
        log.warning("resume: the command line differs from the saved run; continuing with %s", saved)
    old.resume, old.retry_failed = cfg.resume, cfg.get("retry_failed", True)
    check_config(old)
    return old


def offered_teams(cfg: DictConfig) -> list[Team]:
    """The teams with operators in ``teams``: the one knob of what the search may combine
    (``teams=cleaning``, or e.g. ``teams.selection=[]`` to leave one team out)."""
    offered = available_teams(cfg.teams)
    if not offered:
        raise ConfigError("teams: no team has operators (conf/teams); give at least one team an operator")
    return offered


def build_proposer(cfg: DictConfig) -> Proposer:
    """The search method of conf/search/<method>.yaml: the one place a method is instantiated.
    The agent (conf/agent) is built only if the method asks for it."""
    sc, teams = cfg.search, tuple(offered_teams(cfg))
    ctx = Context(teams=teams, seed=cfg.seed,
                  agent=lambda: build_agent(cfg.agent, max_strategies=sc.max_strategies, min_rounds=sc.min_rounds,
                                            seed=cfg.seed, allowed_teams=teams))
    return instantiate(sc.proposer, ctx)


def dps_train(cfg: DictConfig, train: dict[str, Any], split_dir: Path, screener: Path | None) -> dict[str, Any]:
    """Spec of the DPS sample of ``train`` (paper 3.3.2), written to ``split_dir``: the rows
    every strategy is evaluated on. Deterministic for a seed, so a resumed run rewrites it as is."""
    d, rows = cfg.accel.dps, load_spec(train)
    groups = duplicate_groups(rows, OmegaConf.to_container(cfg.teams, resolve=True), d.keep_together)
    # the engine's encoder and map: process=ray embeds on Ray actors and samples in Ray tasks
    engine = build_engine(OmegaConf.to_container(cfg.process, resolve=True))
    with engine.encoder(OmegaConf.to_container(d.encoder, resolve=True)) as encoder:
        rows = sample_rows(rows, encoder, d.ratio, d.method, cfg.seed,
                           ScreeningModel.load(screener) if screener else None, groups, engine.map)
    path = split_dir / "train_dps.jsonl"
    write_rows(path, rows)
    return pinned({"path": str(path), "offset": 0, "limit": None})


def request_template(cfg: DictConfig, specs: DataSpecs, run_dir: Path, screener: Path | None) -> EvalRequest:
    """The 'no processing' request of a run; ``screener`` (F's folder) turns PTS on."""
    return EvalRequest.from_config(cfg, *specs, out_dir=str(run_dir / "datasets"),
                                   screener=str(screener) if screener else None)


def search_template(cfg: DictConfig, specs: DataSpecs, run_dir: Path, screener: Path | None) -> EvalRequest:
    """The request every strategy of the search is evaluated from: under DPS, ``specs.train`` is
    the sample and the operators' counted settings are scaled to it (``accel.dps.scale_counts``)."""
    req = request_template(cfg, specs, run_dir, screener)
    dps = cfg.accel.dps
    return replace(req, teams=scale_teams(req.teams, dps.ratio)) if dps.enabled and dps.scale_counts else req


def run_search(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The search (on the DPS sample when on), then the winner applied to the full training
    set and exported to ``run_dir/export``."""
    t0 = time.perf_counter()
    logger = cfg.logger  # how this invocation reports, also when it resumes a run saved without one
    if cfg.resume is None and (run_dir / "evaluations.jsonl").exists():
        raise ConfigError(f"{run_dir} already holds a search; continue it with resume={run_dir}, "
                          "or choose another hydra.run.dir")
    cfg = load_config(cfg, run_dir)
    sig = signature(cfg)
    store = RunStore(run_dir)
    log.info("run %s in %s (resume=%s)", sig, run_dir, cfg.resume)
    full = data_specs(cfg, run_dir / "splits")
    dps = cfg.accel.dps
    f_path = screening_model_path(cfg) if cfg.accel.pts.enabled or (dps.enabled and dps.stratify) else None
    pts = f_path if cfg.accel.pts.enabled else None
    t1 = time.perf_counter()
    specs = full._replace(train=dps_train(cfg, full.train, run_dir / "splits", f_path if dps.stratify else None)) \
        if dps.enabled else full
    dps_seconds = time.perf_counter() - t1
    proposer = build_proposer(cfg)
    executor = build_executor(cfg.cluster, store)
    tracker = build_tracker(logger, cfg, run_dir, sig)
    template = search_template(cfg, specs, run_dir, pts)
    if tracker and tracker.eval_tracking:
        template = replace(template, tracking=tracker.eval_tracking)
    sc = cfg.search
    search = Search(proposer, template, store, executor.map, evaluate, sc.max_rounds,
                    callbacks=[tracker] if tracker else [], pick=sc.pick, z=sc.z, correction=sc.correction,
                    repeat_reasks=sc.repeat_reasks, budget=sc.budget, retry_failed=cfg.retry_failed)
    try:
        out = search.run()
        out.timings["dps"] = dps_seconds
        out.timings["total"] = time.perf_counter() - t0  # the search: what the timing grid compares
        t2 = time.perf_counter()
        export(replace(request_template(cfg, full, run_dir, pts), strategy=out.best.key), run_dir / "export",
               cfg.get("max_row_bytes"))
        out.timings["export"] = time.perf_counter() - t2
        test = heldout_test_spec(cfg, run_dir / "splits") if cfg.search.confirm else None
        if test is not None:  # opened only now, after the search has decided
            t3 = time.perf_counter()
            out.confirmation = confirm(request_template(cfg, full, run_dir, pts), test, out.best, offered_teams(cfg),
                                       store, executor.map, evaluate, cfg.search.confirm_tie, cfg.retry_failed)
            out.timings["confirm"] = time.perf_counter() - t3
        report(out, store, sig)
    except BaseException:
        if tracker:
            tracker.abort()
        raise
    if tracker:
        tracker.finish(out, store)
    log.info("best strategy %s (%s); the full training set processed by it: %s", out.best.key, out.pick_reason,
             run_dir / "export")
    return {"signature": sig, "best": out.best.key, "stop_reason": out.stop_reason}


def run_apply(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """``task=apply strategy=<key>``: the strategy applied to the full training set, exported to
    ``run_dir/export`` (CRM entries reused when accel.crm is on)."""
    if not cfg.strategy:
        raise ConfigError("task=apply needs a strategy, e.g. strategy='cleaning>selection' (quoted for Hydra)")
    strategy = Strategy.parse(cfg.strategy)
    cfg = load_config(cfg, run_dir)
    pts = screening_model_path(cfg) if cfg.accel.pts.enabled else None
    streams = isinstance(build_engine(OmegaConf.to_container(cfg.process, resolve=True)), StreamingEngine)
    req = replace(request_template(cfg, data_specs(cfg, run_dir / "splits", check_train=not streams), run_dir, pts),
                  strategy=strategy.key)
    m = export(req, run_dir / "export", cfg.get("max_row_bytes"))
    return {"signature": signature(cfg), "strategy": m["strategy"], "rows": m["output"]["rows"]}


TASKS = {"search": run_search, "apply": run_apply, "compare": run_compare}


def run_task(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """``cfg.task`` in ``run_dir``, which no other process may use meanwhile."""
    if cfg.task not in TASKS:
        raise ConfigError(f"task={cfg.task!r}: known tasks are {', '.join(TASKS)}")
    with locked(run_dir):
        return TASKS[cfg.task](cfg, run_dir)
