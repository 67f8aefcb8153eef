"""Held-out confirmation: after the search, its winner, no processing and the all-process strategy
are fine-tuned on the full training set with the search's seeds and scored on the dataset's
`test` split, which nothing in the search read. The answer is a paired estimate per arm against
no processing, and per-row wins/ties/losses.
"""
from __future__ import annotations

import logging
import statistics
from dataclasses import replace
from typing import Any, Callable, Sequence

from autodp.evaluate.estimate import versus
from autodp.evaluate.request import EvalRequest, EvalResult
from autodp.search import Executor
from autodp.store import RunStore, reusable
from autodp.strategy import Strategy, Team, all_process

log = logging.getLogger(__name__)
JOURNAL = "confirm.jsonl"


def arms(winner: Strategy, teams: Sequence[Team]) -> list[Strategy]:
    """The winner, no processing and every offered team in the paper's order, without repeats."""
    return list(dict.fromkeys([winner, Strategy(()), all_process(teams)]))


def compare(template: EvalRequest, split: dict[str, Any], strategies: Sequence[Strategy], store: RunStore,
            run_many: Executor, evaluate: Callable[[EvalRequest], EvalResult], tie: float,
            retry_failed: bool = True) -> dict[str, Any]:
    """Each strategy (no processing among them) fine-tuned with the template's seeds and scored row
    by row on ``split``, against no processing: a paired delta ± SE and per-row wins/ties/losses.
    Journaled, so a resumed run does not fine-tune them again (failures aside, unless
    ``retry_failed`` is off)."""
    done = {s: EvalResult(**r) for s, r in reusable(store.read(JOURNAL), retry_failed).items()}
    base = replace(template, val=split, eval={**template.eval, "per_row": True})
    reqs = [replace(base, strategy=s.key) for s in dict.fromkeys([Strategy(()), *strategies])]
    for res in run_many(evaluate, [q for q in reqs if q.signature not in done]):
        store.append(JOURNAL, res.as_dict())
        done[res.signature] = res
    results = {q.strategy: done[q.signature] for q in reqs}
    failed = {k: r.error for k, r in results.items() if r.status != "ok"}
    if "none" in failed:
        raise RuntimeError(f"no processing failed on {split['path']}: {failed['none']}")
    none = results["none"]
    ok = {k: r for k, r in results.items() if r.status == "ok" and k != "none"}
    est, df = versus(none, ok)
    out: dict[str, Any] = {"rows": len(none.row_scores[0]), "seeds": len(none.seed_scores), "se_df": df,
                           "failed": failed, "r0": none.score, "arms": {}}
    base_rows = [statistics.fmean(col) for col in zip(*none.row_scores)]  # each row's r, mean over seeds
    for k, r in ok.items():
        d = [statistics.fmean(col) - b for col, b in zip(zip(*r.row_scores), base_rows)]
        out["arms"][k] = {"r": r.score, "seed_scores": r.seed_scores, "rows_out": r.rows_out,
                          "delta": est[k].mean, "se": est[k].se,
                          "wins": sum(x > tie for x in d), "ties": sum(abs(x) <= tie for x in d),
                          "losses": sum(x < -tie for x in d)}
    return out


def confirm(template: EvalRequest, test: dict[str, Any], winner: Strategy, teams: Sequence[Team],
            store: RunStore, run_many: Executor, evaluate: Callable[[EvalRequest], EvalResult],
            tie: float, retry_failed: bool = True) -> dict[str, Any]:
    """The winner and the all-process strategy against no processing on the held-out ``test`` split."""
    out = {"winner": winner.key, **compare(template, test, arms(winner, teams), store, run_many, evaluate, tie,
                                           retry_failed)}
    log.info("held-out test (%d rows): %s", out["rows"], "; ".join(lines(out)))
    return out


def lines(c: dict[str, Any]) -> list[str]:
    """One line per arm against no processing, for the summary and the logs."""
    out = []
    for k, a in c["arms"].items():
        se = "" if a["se"] is None else f" ± {a['se']:.4f}"
        role = "winner" if k == c.get("winner") else "all-process" if c.get("winner") else "strategy"
        out.append(f"{role} {k} vs none on test: {a['delta']:+.4f}{se}, per-row wins/ties/losses "
                   f"{a['wins']}/{a['ties']}/{a['losses']}")
    if c.get("winner") == "none":
        out.insert(0, "winner none: nothing to confirm against no processing")
    return out + [f"{k} failed on test: {e}" for k, e in c["failed"].items()]
