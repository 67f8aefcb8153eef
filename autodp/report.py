"""A static, self-contained HTML report of a run or a sweep, built from the local run store.

    python -m autodp.report <run-or-sweep-dir> [--out report.html] [--wandb-report]

For a run: the score s = r - r_0 of every strategy per round with the best-so-far line, the
strategies tried as a table (the winner highlighted), the agent's decision per round and the
time per stage; a task=compare run dir gets its judge and reference-metric tables. For a sweep
(any dir with several runs below it): the methods table when it compares search methods
(autodp/tracking/methods.py), else the timing grid of autodp/tracking/grid.py (paper Table 5),
then one such section per run. Plots are PNGs embedded as data URIs: the file stands alone.

It reads results.json, evaluations.jsonl, agent/proposals.jsonl and config.yaml, never a
dataset: like everything the run store reports, it holds strategy names, numbers and timings.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from autodp.accel import accel_name
from autodp.confirm import lines as confirm_lines
from autodp.data.io import atomic_write
from autodp.store import read_jsonl
from autodp.tracking import methods
from autodp.tracking.grid import collect, markdown, plot as plot_grid

# Leaves of the timing tree, in pipeline order ("total" and "evaluate" are sums of them).
STAGES = ("dps", "agent", "eval.process", "eval.load_model", "eval.finetune", "eval.score", "export")
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
tr.winner td{background:#fff3c4;font-weight:600}tr.failed td{color:#a33}
.muted{color:#777}img{max-width:100%;height:auto;border:1px solid #eee}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}dd{margin:0}
"""


@dataclass
class Run:
    """What the report needs from one run dir."""
    dir: Path
    config: Any
    results: dict[str, Any]
    evaluations: dict[str, dict[str, Any]]  # the last journaled evaluation per strategy
    proposals: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, run_dir: Path) -> "Run":
        evals = {e["strategy"]: e for e in read_jsonl(run_dir / "evaluations.jsonl")}
        return cls(run_dir, OmegaConf.load(run_dir / "config.yaml"), json.loads((run_dir / "results.json").read_text()),
                   evals, read_jsonl(run_dir / "agent" / "proposals.jsonl"))

    @property
    def title(self) -> str:
        return (f"{self.config.dataset.name} / search={self.config.search.method} / accel={accel_name(self.config)}"
                f" / {self.results['signature']}")

    def rows(self) -> list[dict[str, Any]]:
        """results.json's table with the cache columns filled from evaluations.jsonl (older runs
        did not write them into results.json)."""
        out = []
        for row in self.results["table"]:
            ev = self.evaluations.get(row["strategy"], {})
            ops = ev.get("ops", [])
            out.append({**row, "rows_in": row.get("rows_in", ev.get("rows_in")),
                        "rows_out": row.get("rows_out", ev.get("rows_out")),
                        "score_cached": row.get("score_cached", ev.get("score_cached", False)),
                        "ops_cached": row.get("ops_cached", sum(bool(o.get("cached")) for o in ops)),
                        "ops": len(ops)})
        return out


def _fmt(x: float | None, digits: int = 4, sign: bool = True) -> str:
    return "-" if x is None else f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _png(fig: Any) -> str:
    """The figure as a data URI (and closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return _data_uri(buf.getvalue())


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def score_plot(run: Run) -> str:
    """s per strategy and round, the best-so-far line, the winner as a star; failed strategies
    as crosses on the bottom edge (they have no score)."""
    plt = _pyplot()
    rows = [r for r in run.rows() if not r["repeat"]]
    ok = [r for r in rows if r["status"] == "ok"]
    best_key = run.results["best"]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    ax.axhline(0, color="#999", lw=0.8, ls=":", zorder=1)
    ses = [r["se"] for r in ok if r.get("se")]
    if ses and run.results.get("threshold_se"):  # the pooled SE is one number for every strategy
        band = run.results["threshold_se"] * max(ses)
        ax.axhspan(-band, band, color="#bbbbbb", alpha=0.35, lw=0, zorder=0,
                   label=f"noise: |s| < {run.results['threshold_se']:.2f} SE")
    ax.errorbar([r["round"] for r in ok], [r["s"] for r in ok], yerr=[r.get("se") or 0.0 for r in ok], fmt="o",
                ms=6, color="#3b75af", ecolor="#3b75af", elinewidth=1, capsize=3, zorder=3, label="strategy ± SE")
    rounds = sorted({r["round"] for r in run.results["table"]} | {p["round"] for p in run.proposals})
    best, line = float("-inf"), []
    for k in rounds:
        best = max([best] + [r["s"] for r in ok if r["round"] == k])
        line.append(best)
    ax.step(rounds, line, where="post", color="#e08a1e", lw=2, zorder=2, label="best so far")
    win = [r for r in ok if r["strategy"] == best_key]
    if win:
        ax.scatter([win[0]["round"]], [win[0]["s"]], marker="*", s=260, color="#f2c12e", edgecolor="#7a5b00",
                   zorder=4, label=f"winner: {best_key}")
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        ax.scatter([r["round"] for r in failed], [0.03] * len(failed), marker="x", color="#c0392b", zorder=4,
                   transform=ax.get_xaxis_transform(), label="failed")
    if len(ok) <= 14:  # beyond that the labels hide the points
        labels: dict[tuple[int, float], list[str]] = {}
        for r in ok:  # strategies that produce the same data score the same: one label for them
            labels.setdefault((r["round"], round(r["s"], 9)), []).append(r["strategy"])
        for (rnd, s), keys in labels.items():
            ax.annotate("\n".join(keys), (rnd, s), textcoords="offset points", xytext=(6, 3), fontsize=7,
                        color="#444", va="bottom" if len(keys) == 1 else "center")
    stops = {p["round"]: p["decision"] for p in run.proposals if p["decision"] != "continue"}
    ax.set_xticks(rounds, [f"{k}\n{stops[k]}" if k in stops else str(k) for k in rounds])
    ax.set_xlim(min(rounds) - 0.3, max(rounds) + 0.9)  # room for the labels right of the last round
    ax.margins(y=0.15)
    ax.set_xlabel("round (0: no processing)")
    ax.set_ylabel("s = r - r0 (higher is better)")
    ax.set_title("Score per round", fontsize=10)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def timing_plot(timings: dict[str, float]) -> str:
    plt = _pyplot()
    stages = [s for s in STAGES if s in timings]
    secs = [timings[s] for s in stages]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(stages) + 1.2))
    bars = ax.barh(stages, secs, color="#3b75af")
    ax.bar_label(bars, labels=[f"{s:.1f} s" if s >= 0.05 else f"{1000 * s:.0f} ms" for s in secs], padding=3,
                 fontsize=8)
    ax.invert_yaxis()  # pipeline order from the top
    ax.set_xlim(0, max(secs + [1e-9]) * 1.18)  # room for the labels
    ax.set_xlabel("seconds")
    total = timings.get("total")
    ax.set_title("Time per stage" + (f" (search total {total:.1f} s)" if total is not None else ""), fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None,
           left: tuple[int, ...] = ()) -> str:
    """An HTML table of already formatted cells; the columns in ``left`` (text) align left,
    the others (numbers) right."""
    def cells(tag: str, values: list[str]) -> str:
        return "".join(f"<{tag}{' class=l' if i in left else ''}>{html.escape(v)}</{tag}>"
                       for i, v in enumerate(values))
    body = "".join(f"<tr{f' class={c}' if c else ''}>{cells('td', r)}</tr>"
                   for r, c in zip(rows, classes or [""] * len(rows)))
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def _stage_order(stage: str) -> tuple[int, str]:
    return (STAGES.index(stage) if stage in STAGES else len(STAGES), stage)


def _source(p: dict[str, Any]) -> str:
    """Who answered a round: the agent's source, or the method's own note (e.g. MCTS's expansion)."""
    meta = p.get("meta", p)  # journals from before methods had a meta held the source at the top
    return str(meta.get("source") or meta.get("expansion") or "-")


def _agent_name(agent: DictConfig) -> str:
    """The agent's model, or 'heuristic'; a run saved before agent.client existed names its backend."""
    if agent.get("client"):
        return f"{agent.client.backend}: {agent.client.model}"
    return str(agent.get("backend", "heuristic"))


def run_section(run: Run) -> str:
    res = run.results
    best = res["best"]
    best_row = next((r for r in res["table"] if r["strategy"] == best), None)
    se = best_row.get("se") if best_row else None
    facts = [("best strategy", f"{best} (s = {_fmt(best_row['s'] if best_row else None)}"
              + ("" if se is None else f" ± {se:.4f}") + ")"),
             ("picked by", f"{res.get('pick', 'top')}: {res.get('pick_reason', '-')}"),
             ("the method's final choice", str(res.get("agent_best") or "none made")),
             *[("held-out test", line) for line in (confirm_lines(res["test"]) if res.get("test") else [])],
             ("stopped because", res["stop_reason"]), ("r0 (no processing)", _fmt(res["r0"], sign=False)),
             ("agent answers", ", ".join(f"{k}: {v}" for k, v in res["agent_rounds"].items())
              + f"; {res['reprompts']} re-prompt(s)"),
             ("agent", _agent_name(run.config.agent)), ("run dir", str(run.dir))]
    rows, classes = [], []
    for r in run.rows():
        cached = [x for x, on in (("repeat", r["repeat"]), ("score", r["score_cached"]),
                                  (f"ops {r['ops_cached']}/{r['ops']}", r["ops_cached"])) if on]
        winner = r["strategy"] == best and not r["repeat"]
        s_se = _fmt(r["s"]) + ("" if r.get("se") is None else f" ± {r['se']:.4f}") + (" *" if r.get("beyond_noise") else "")
        rows.append([str(r["round"]), ("★ " if winner else "") + r["strategy"], r["status"], _fmt(r["r"]),
                     s_se, "-" if r["status"] != "ok" else f"{r['rows_in']} → {r['rows_out']}",
                     f"{r['seconds']:.1f}", ", ".join(cached) or "-", r.get("error") or ""])
        classes.append("winner" if winner else "failed" if r["status"] != "ok" else "")
    decisions = [[str(p["round"]), p["decision"], ", ".join(p["strategies"]) or "-", str(p.get("best") or "-"),
                  _source(p)] for p in run.proposals]
    timings = res["timings"]
    return "\n".join([
        f"<h2 id=\"{html.escape(res['signature'])}\">{html.escape(run.title)}</h2>",
        "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts) + "</dl>",
        f'<img alt="score per round" src="{score_plot(run)}">',
        "<h3>Strategies tried</h3>",
        _table(["round", "strategy", "status", "r", "s = r - r0 ± SE", "rows", "seconds", "cached", "error"], rows,
               classes, left=(1, 2, 7, 8)) if rows else "<p class=muted>no strategy was evaluated</p>",
        "<p class=muted>* beats no processing beyond noise. cached: repeat = evaluated in an earlier round; "
        "score = fine-tune result reused "
        "from the CRM cache; ops k/n = operators whose output came from the CRM cache.</p>",
        "<h3>Agent decisions</h3>",
        _table(["round", "decision", "proposed", "picked", "source"], decisions, left=(1, 2, 3, 4)),
        "<h3>Time per stage</h3>",
        f'<img alt="time per stage" src="{timing_plot(timings)}">',
        _table(["stage", "seconds"], [[k, f"{timings[k]:.2f}"] for k in sorted(timings, key=_stage_order)],
               left=(0,)),
    ])


def run_dirs(path: Path) -> list[Path]:
    return sorted(p.parent for p in path.rglob("results.json"))


def _markdown_html(md: str, left: tuple[int, ...] = (0,)) -> str:
    """The tables of a Markdown file this project wrote as HTML tables, its other lines as paragraphs."""
    parts, block = [], []
    for line in [*md.strip().splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if block:
            parts.append(_table(block[0], block[2:], left=left))
            block = []
        if line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    return "\n".join(parts)


def grid_section(sweep: Path) -> str:
    """grid.md / grid.png as the multirun callback wrote them, recomputed when missing."""
    cells = collect(sweep)
    md, png = sweep / "grid.md", sweep / "grid.png"
    with tempfile.TemporaryDirectory() as tmp:
        if not png.exists():  # a sweep whose callback did not run (e.g. cells started by hand): plot it, dir untouched
            png = Path(tmp) / "grid.png"
            plot_grid(cells, png)
        uri = _data_uri(png.read_bytes())
    return "\n".join(["<h2 id=grid>Timing grid (cf. paper Table 5)</h2>",
                      _markdown_html(md.read_text() if md.exists() else markdown(cells)),
                      f'<img alt="timing grid" src="{uri}">'])


def compare_section(path: Path) -> str:
    """task=compare's tables (compare.md) and win/tie/loss plot (autodp/compare/task.py)."""
    return "\n".join(["<h2 id=compare>Final evaluation: judge and reference metrics (cf. paper Tables 3, 4, 6, 7)</h2>",
                      _markdown_html((path / "compare.md").read_text(), left=(0, 1)),  # written with compare.png
                      f'<img alt="wins, ties, losses" src="{_data_uri((path / "compare.png").read_bytes())}">'])


def methods_section(sweep: Path) -> str:
    """The methods table of a sweep over several search methods (autodp/tracking/methods.py)."""
    runs = methods.collect(sweep)
    rows = [[r["dataset"], r["method"], str(r["runs"]), r["picks"], methods.pm(*r["val"]), methods.pm(*r["test"]),
             f"{r['evaluations']:.1f}", f"{r['agent_min']:.1f}", f"{r['wall_min']:.1f}"]
            for r in methods.summary_rows(runs)]
    with tempfile.TemporaryDirectory() as tmp:
        methods.plot(runs, Path(tmp) / "methods.png")
        uri = _data_uri((Path(tmp) / "methods.png").read_bytes())
    return "\n".join(["<h2 id=methods>Search methods (cf. paper Tables 3, 4 and 6)</h2>",
                      _table(["dataset", "method", "runs", "pick", "val s ± SE", "test vs none ± SE", "evaluations",
                              "agent (min)", "wall (min)"], rows, left=(0, 1, 3)),
                      "<p class=muted>Over several runs (seeds): the mean ± its SE across runs; one run: ± its own SE."
                      "</p>", f'<img alt="search methods" src="{uri}">'])


def build(path: Path) -> str:
    """The report of a run dir (it has results.json) or of a sweep (runs below it)."""
    path = Path(path)
    runs = [Run.load(d) for d in run_dirs(path)]
    compared = (path / "compare.md").exists()
    if not runs and not compared:
        raise FileNotFoundError(f"{path}: no run with a results.json in or below it, and no compare.md")
    single = len(runs) == 1 and runs[0].dir == path
    title = f"autodp {'compare' if compared and not runs else 'run' if single else 'sweep'} {path.name}"
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p class=muted>{html.escape(str(path.resolve()))}</p>",
             *([compare_section(path)] if compared else [])]
    if single:
        parts.append(run_section(runs[0]))
    elif runs:
        winners = [[r.config.dataset.name, accel_name(r.config), r.results["best"],
                    _fmt(next((x["s"] for x in r.results["table"] if x["strategy"] == r.results["best"]), None)),
                    f"{r.results['timings'].get('total', 0):.1f}"] for r in runs]
        parts += ["<ul>" + "".join(f'<li><a href="#{html.escape(r.results["signature"])}">{html.escape(r.title)}'
                                   f"</a></li>" for r in runs) + "</ul>",
                  *([methods_section(path)] if methods.several_methods(path) else [grid_section(path)]),
                  "<h2>Winners</h2>",
                  _table(["dataset", "accel", "best strategy", "s", "search seconds"], winners, left=(0, 1, 2))]
        parts += [run_section(r) for r in runs]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write(path: Path, out: Path | None = None) -> Path:
    """Build the report and write it atomically (default: ``<path>/report.html``)."""
    out = Path(out) if out else Path(path) / "report.html"
    text = build(path)
    with atomic_write(out) as f:
        f.write(text)
    return out


def wandb_report(path: Path, project: str | None, entity: str | None) -> str:
    """A W&B Report of the same runs, in their W&B project (needs an online login and the
    optional ``wandb-workspaces`` package; not exercised by the tests, which run offline)."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError as e:
        raise SystemExit("--wandb-report needs the optional package wandb-workspaces (pip install wandb-workspaces)") \
            from e
    from autodp.tracking.wandb_run import group_dir, group_of, has_api_key

    if not has_api_key():
        raise SystemExit("--wandb-report needs an online W&B login (WANDB_API_KEY or `wandb login`)")
    runs = [Run.load(d) for d in run_dirs(Path(path))]
    logger = OmegaConf.to_container(runs[0].config.get("logger") or {"project": "autodp"}, resolve=True)
    project, entity = project or logger["project"], entity or logger.get("entity")
    groups = sorted({group_of(logger, group_dir(r.dir)) for r in runs})
    blocks = [wr.H1(f"autodp: {Path(path).name}")]
    for group in groups:
        runset = wr.Runset(entity=entity, project=project, name=group, filters=f"Metric('group') == '{group}'")
        blocks += [wr.H2(f"group {group}"),
                   wr.PanelGrid(runsets=[runset], panels=[
                       wr.LinePlot(title="best s so far", x="round", y=["best_s"]),
                       wr.LinePlot(title="best s of the round", x="round", y=["s_max"]),
                       wr.BarPlot(title="seconds per stage", metrics=[f"timings.{s}" for s in STAGES])])]
    for r in runs:
        md = ["| round | strategy | status | s |", "|---|---|---|---|"]
        md += [f"| {x['round']} | {x['strategy']} | {x['status']} | {_fmt(x['s'])} |" for x in r.results["table"]]
        blocks += [wr.H3(r.title), wr.P(f"best: {r.results['best']}; {r.results['stop_reason']}"),
                   wr.MarkdownBlock("\n".join(md))]
    report = wr.Report(entity=entity, project=project, title=f"autodp {Path(path).name}",
                       description="strategies, scores and timings of an autodp search", blocks=blocks)
    report.save()
    return report.url


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m autodp.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path, help="a run dir (with results.json) or a sweep dir")
    ap.add_argument("--out", type=Path, help="where to write the HTML (default: <path>/report.html)")
    ap.add_argument("--wandb-report", action="store_true", help="also create a W&B Report (online only)")
    ap.add_argument("--project", help="W&B project for --wandb-report (default: the run's logger.project)")
    ap.add_argument("--entity", help="W&B entity for --wandb-report")
    args = ap.parse_args(argv)
    print(write(args.path, args.out))
    if args.wandb_report:
        print(wandb_report(args.path, args.project, args.entity))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
