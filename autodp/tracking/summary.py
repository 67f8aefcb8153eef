"""What a finished search shows a person: a table, summary.md and timings (no sample text)."""
from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from autodp.confirm import lines as confirm_lines
from autodp.data.io import atomic_write
from autodp.search import SearchOutcome
from autodp.store import RunStore


def rows_table(out: SearchOutcome) -> list[dict[str, Any]]:
    """One row per evaluated strategy, in round order (round 0 is the unprocessed baseline).
    ``repeat``: evaluated in an earlier round of this run; ``score_cached`` / ``ops_cached``: the
    score / that many operators reused from the CRM cache."""
    table, seen = [], set()
    for rnd, keys in [(0, ["none"])] + [(p["round"], p["strategies"]) for p in out.rounds]:
        for key in keys:
            r = out.results[key]
            table.append({"round": rnd, "strategy": key, "status": r.status,
                          "r": r.score, "s": out.s(key), "se": out.se(key), "beyond_noise": out.beyond_noise(key),
                          "seed_scores": r.seed_scores,
                          "rows": f"{r.rows_in}->{r.rows_out}" if r.status == "ok" else "-",
                          "rows_in": r.rows_in, "rows_out": r.rows_out,
                          "seconds": round(sum(r.timings.values()), 1), "repeat": key in seen,
                          "score_cached": r.score_cached, "ops_cached": sum(bool(op.get("cached")) for op in r.ops),
                          "error": r.error})
            seen.add(key)
    return table


def agent_answers(rounds: list[dict[str, Any]]) -> tuple[dict[str, int], int]:
    """Rounds per answer source (model, heuristic, fallback:heuristic) and re-prompts, from the
    agent's bookkeeping in each round's meta; empty for a method that asked no agent."""
    sources: dict[str, int] = {}
    for p in rounds:
        meta = p.get("meta") or {}
        if "source" in meta:
            sources[meta["source"]] = sources.get(meta["source"], 0) + 1
    return sources, sum((p.get("meta") or {}).get("reprompts", 0) for p in rounds)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:+.4f}"


def _fmt_s(row: dict[str, Any]) -> str:
    """s ± SE, starred when beyond noise."""
    if row["s"] is None:
        return "-"
    return _fmt(row["s"]) + ("" if row["se"] is None else f" ± {row['se']:.4f}") + (" *" if row["beyond_noise"] else "")


def report(out: SearchOutcome, store: RunStore, signature: str) -> str:
    table = rows_table(out)
    t = Table(title=f"autodp search {signature}")
    for col in ("round", "strategy", "status", "r", "s = r - r0 ± SE", "rows", "seconds"):
        t.add_column(col, no_wrap=True)
    for row in table:
        t.add_row(str(row["round"]), row["strategy"] + (" (cached)" if row["repeat"] else ""), row["status"],
                  _fmt(row["r"]), _fmt_s(row), row["rows"], str(row["seconds"]))
    console = Console(width=max(100, Console().width))
    console.print(t)
    src, reprompts = agent_answers(out.rounds)
    fallback = sum(v for k, v in src.items() if k.startswith("fallback"))
    seeds = max((len(r.seed_scores) for r in out.results.values()), default=0)
    noise = "-" if out.threshold is None else f"{out.threshold:.2f}"
    lines = [
        f"best strategy: {out.best.key} (s = {_fmt(out.s(out.best.key))}"
        + ("" if out.se(out.best.key) is None else f" ± {out.se(out.best.key):.4f}") + f"; pick={out.pick}: {out.pick_reason})",
        f"the method's final choice: {out.agent_best or 'none made'}",
        f"noise: {seeds} fine-tune seed(s) per strategy, SE pooled over {out.df} degree(s) of freedom; "
        f"* beats none by more than {noise} SE",
        f"stopped because: {out.stop_reason}",
        f"strategies evaluated besides no processing: {out.spent}"
        + ("" if out.budget is None else f" (budget {out.budget})"),
    ]
    if src:
        lines.append(f"agent answers: {src.get('model', 0)} round(s) from the model, {fallback} from the fallback, "
                     f"{src.get('heuristic', 0)} from the rule-based agent; {reprompts} re-prompt(s); "
                     f"{out.repeat_proposals} proposal(s) of evaluated strategies only")
    if out.confirmation is not None:
        lines += confirm_lines(out.confirmation)
    failed: dict[str, list[str]] = {}
    for r in table:
        if r["status"] != "ok" and not r["repeat"]:
            failed.setdefault(str(r["error"]), []).append(r["strategy"])
    lines += [f"failed ({len(keys)}): {err}: {', '.join(keys)}" for err, keys in failed.items()]
    for line in lines:
        console.print(line)
    md = [f"# autodp search `{signature}`", "", *[f"- {x}" for x in lines], "",
          "| round | strategy | status | r | s = r - r0 ± SE | rows | seconds |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['round']} | {r['strategy']}{' (cached)' if r['repeat'] else ''} | "
           f"{r['status']} | {_fmt(r['r'])} | "
           f"{_fmt_s(r)} | {r['rows']} | {r['seconds']} |" for r in table]
    md += ["", "## Time per stage (s)", "", *[f"- {k}: {v:.1f}" for k, v in sorted(out.timings.items())], ""]
    text = "\n".join(md)
    with atomic_write(store.path("summary.md")) as f:
        f.write(text)
    with atomic_write(store.path("results.json")) as f:
        json.dump({"signature": signature, "best": out.best.key, "pick": out.pick, "pick_reason": out.pick_reason,
                   "agent_best": out.agent_best, "stop_reason": out.stop_reason, "r0": out.r0,
                   "se_df": out.df, "threshold_se": out.threshold, "repeat_proposals": out.repeat_proposals,
                   "agent_rounds": src, "reprompts": reprompts, "evaluations": out.spent, "budget": out.budget,
                   "timings": out.timings, "test": out.confirmation, "table": table}, f, indent=1)
    return text
