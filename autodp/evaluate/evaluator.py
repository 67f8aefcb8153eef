"""R(f) = Eval(FT(W_pre, f(D)), D_val) (paper eq. 2), one strategy per call."""
from __future__ import annotations

import logging
import statistics
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from autodp.accel.crm import Crm, score_key
from autodp.accel.screening import ScreeningModel
from autodp.data.io import DataError, Row, fingerprint, load_spec, write_rows
from autodp.evaluate import ds_train
from autodp.evaluate.finetune import train
from autodp.evaluate.schedule import matched_budget
from autodp.evaluate.lm import load_base
from autodp.evaluate.request import EvalRequest, EvalResult
from autodp.evaluate.scoring import score
from autodp.metrics import METRICS
from autodp.ops.base import OpReport, TeamNotAvailable
from autodp.ops.teams import apply_strategy
from autodp.process import build_engine
from autodp.resources import cpu_threads
from autodp.strategy import Strategy

log = logging.getLogger(__name__)
# Messages of these errors are written by autodp and name no sample text, so the agent may see them.
SAFE_ERRORS = (TeamNotAvailable, DataError)


def _finetune_and_score(req: EvalRequest, processed: list[Row], seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """FT(W_pre, processed) then Eval(., D_val): (metrics, seconds per stage)."""
    t0 = time.perf_counter()
    ft = req.finetune
    torch.set_num_threads(cpu_threads(ft.get("threads")))
    model, tok = load_base(ft, load_spec(req.pool))
    t1 = time.perf_counter()
    metrics = train(model, tok, processed, ft, seed=seed)
    t2 = time.perf_counter()
    metrics.update(score(model, tok, load_spec(req.val), ft, req.eval, seed))
    return metrics, {"load_model": t1 - t0, "finetune": t2 - t1, "score": time.perf_counter() - t2}


def process(req: EvalRequest, crm: Crm | None) -> tuple[list[Row], list[Row], list[OpReport]]:
    """f(D) for the request: (input rows, processed rows, one report per operator). With a
    ``crm`` (the request's ``crm_dir``) the longest cached prefix of the strategy is reused."""
    rows = load_spec(req.train)
    processed, reports = apply_strategy(Strategy.parse(req.strategy), rows, req.teams, context(req), crm,
                                        build_engine(req.process))
    return rows, processed, reports


def context(req: EvalRequest) -> dict[str, Any]:
    """What operators may take from the evaluation they run in (``Operator.context_params``), and F."""
    return {"finetune": req.finetune, "val": req.target, "pool": req.pool,
            "screener": ScreeningModel.load(Path(req.screener)) if req.screener else None}


def evaluate(req: EvalRequest) -> EvalResult:
    """Never raises for a failing strategy: the failure is a result the agent is told about.

    With ``req.crm_dir`` (CRM), processing reuses the longest cached prefix of the strategy, and
    data already scored under the same settings is not fine-tuned again (``score_cached``).
    With ``req.tracking`` the evaluation is also a W&B run in the search's group."""
    if req.tracking:
        from autodp.tracking.wandb_run import tracked_evaluation  # wandb is imported only where asked for

        return tracked_evaluation(req, _evaluate)
    return _evaluate(req)


def _evaluate(req: EvalRequest) -> EvalResult:
    res = EvalResult(strategy=req.strategy, signature=req.signature, status="failed")
    try:
        t0 = time.perf_counter()
        crm = Crm(req.crm_dir) if req.crm_dir else None
        rows, processed, reports = process(req, crm)
        res.rows_in = len(rows)
        res.ops = [r.as_dict() for r in reports]
        res.rows_out = len(processed)
        if not processed:
            raise TeamNotAvailable(f"strategy {req.strategy} removed every row")
        res.data_fingerprint = fingerprint(processed)
        path = Path(req.out_dir) / f"{res.data_fingerprint}.jsonl"
        write_rows(path, processed)
        res.processed_path = str(path)
        res.timings = {"process": time.perf_counter() - t0}

        req = replace(req, finetune=matched_budget(req.finetune, res.rows_in))
        per_seed, cached_seeds = [], 0
        for seed in req.fit_seeds:
            key = score_key(processed, req.finetune, req.eval, req.val, req.pool, seed) if crm else None
            metrics = crm.metrics(key) if crm else None
            if metrics is None:
                if req.finetune.get("deepspeed"):  # a torchrun job on every GPU (autodp/evaluate/ds_train.py)
                    metrics, timings = ds_train.finetune_and_score(req, path, seed)
                else:
                    metrics, timings = _finetune_and_score(req, processed, seed)
                for stage, seconds in timings.items():
                    res.timings[stage] = res.timings.get(stage, 0.0) + seconds
                if crm:
                    crm.put_metrics(key, metrics)
            else:
                cached_seeds += 1
            per_seed.append(metrics)
        res.score_cached = cached_seeds == len(per_seed)
        metric = METRICS[req.eval["metric"]]
        res.seed_scores = [metric.signed(m[metric.name]) for m in per_seed]
        if req.eval.get("per_row"):  # a model metric's rows are scored per character
            rows = METRICS["nll_per_char"] if metric.needs == "model" else metric
            res.row_scores = [[rows.signed(x) for x in m[f"rows_{rows.name}"]] for m in per_seed]
        res.metrics.update({k: statistics.fmean(m[k] for m in per_seed) for k in per_seed[0]
                            if all(isinstance(m.get(k), (int, float)) for m in per_seed)})
        res.score = statistics.fmean(res.seed_scores)
        res.status = "ok"
        log.info("R(%s) = %.4f (%d seed(s)) on %d -> %d rows (%s)%s", req.strategy, res.score, len(per_seed),
                 res.rows_in, res.rows_out, ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items()),
                 f"; {cached_seeds} seed(s) reused from the CRM cache" if cached_seeds else "")
    except Exception as e:  # noqa: BLE001 - any failure of one strategy is recorded, not fatal
        res.error = str(e) if isinstance(e, SAFE_ERRORS) else f"evaluation failed ({type(e).__name__})"
        res.traceback = traceback.format_exc()
        log.warning("strategy %s failed: %s", req.strategy, res.error)
    return res
