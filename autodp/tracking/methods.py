"""The comparison of search methods over a sweep (paper Tables 3, 4 and 6, on scores rather than
a judge): per dataset and method, the pick, its validation score s ± SE, its held-out test score
against no processing ± SE (autodp/confirm.py), the evaluations used, the agent's and the wall
time, as Markdown, CSV and a PNG plot.

Run it on a sweep dir (``python -m autodp.tracking.methods multirun/<date>/<time>``), or let the
Hydra callback in conf/config.yaml write it when a multirun over several ``search`` options ends.
A run is any dir under the sweep with a ``results.json``; its method, dataset and seed are read
from the saved ``config.yaml``.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from autodp.tracking.sweep_table import grouped_bars, main, mean_se, write_files

log = logging.getLogger(__name__)
COLUMNS = ("dataset", "method", "seed", "best", "val_s", "val_se", "test_delta", "test_se", "evaluations",
           "agent_seconds", "wall_seconds", "run_dir")


@dataclass
class MethodRun:
    dataset: str
    method: str
    seed: int
    best: str
    val_s: float | None
    val_se: float | None
    test_delta: float | None  # the pick against no processing on the held-out test split; None: not confirmed
    test_se: float | None
    evaluations: int  # strategies evaluated besides no processing
    agent_seconds: float
    wall_seconds: float
    run_dir: Path


def _run(run_dir: Path) -> MethodRun:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    res = json.loads((run_dir / "results.json").read_text())
    best = res["best"]
    row = next((r for r in res["table"] if r["strategy"] == best), {})
    test, delta, se = res.get("test"), None, None
    if test and best == "none":
        delta = 0.0  # the pick is the reference itself
    elif test and best in test["arms"]:
        delta, se = test["arms"][best]["delta"], test["arms"][best]["se"]
    return MethodRun(cfg.dataset.name, cfg.search.method, cfg.seed, best, row.get("s"), row.get("se"), delta, se,
                     res.get("evaluations", len({r["strategy"] for r in res["table"]} - {"none"})),
                     res["timings"].get("agent", 0.0), res["timings"].get("total", 0.0), run_dir)


def collect(sweep: Path) -> list[MethodRun]:
    runs = [_run(p.parent) for p in sorted(Path(sweep).rglob("results.json"))]
    if not runs:
        raise FileNotFoundError(f"{sweep}: no run with a results.json below it")
    return runs


def _mean_se(values: list[float | None], ses: list[float | None]) -> tuple[float | None, float | None]:
    """Mean over runs with its SE across runs (seeds); one run: its own SE."""
    pairs = [(v, s) for v, s in zip(values, ses) if v is not None]
    if not pairs:
        return None, None
    if len(pairs) == 1:
        return pairs[0]
    return mean_se([v for v, _ in pairs])


def pm(mean: float | None, se: float | None) -> str:
    """mean ± SE to 4 decimals; "-" without a mean."""
    return "-" if mean is None else f"{mean:+.4f}" + ("" if se is None else f" ± {se:.4f}")


def summary_rows(runs: list[MethodRun]) -> list[dict[str, Any]]:
    """One row per (dataset, method), over its runs (seeds)."""
    groups: dict[tuple[str, str], list[MethodRun]] = {}
    for r in runs:
        groups.setdefault((r.dataset, r.method), []).append(r)
    out = []
    for (dataset, method), rs in sorted(groups.items()):
        picks = Counter(r.best for r in rs)
        out.append({"dataset": dataset, "method": method, "runs": len(rs),
                    "picks": ", ".join(f"{k} ×{n}" if n > 1 else k for k, n in picks.most_common()),
                    "val": _mean_se([r.val_s for r in rs], [r.val_se for r in rs]),
                    "test": _mean_se([r.test_delta for r in rs], [r.test_se for r in rs]),
                    "evaluations": statistics.fmean(r.evaluations for r in rs),
                    "agent_min": statistics.fmean(r.agent_seconds for r in rs) / 60,
                    "wall_min": statistics.fmean(r.wall_seconds for r in rs) / 60})
    return out


def markdown(runs: list[MethodRun]) -> str:
    lines = ["| dataset | method | runs | pick | val s ± SE | test vs none ± SE | evaluations | agent (min) "
             "| wall (min) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary_rows(runs):
        lines.append(f"| {r['dataset']} | {r['method']} | {r['runs']} | {r['picks']} | {pm(*r['val'])} | "
                     f"{pm(*r['test'])} | {r['evaluations']:.1f} | {r['agent_min']:.1f} | {r['wall_min']:.1f} |")
    return "\n".join(lines) + "\n\nOver several runs (seeds): the mean, ± its SE across runs; one run: ± its own SE.\n"


def table_csv(runs: list[MethodRun]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(COLUMNS)
    for r in runs:
        w.writerow([r.dataset, r.method, r.seed, r.best, *("" if x is None else f"{x:.6f}" for x in
                                                           (r.val_s, r.val_se, r.test_delta, r.test_se)),
                    r.evaluations, f"{r.agent_seconds:.3f}", f"{r.wall_seconds:.3f}", r.run_dir])
    return out.getvalue()


def plot(runs: list[MethodRun], path: Path) -> None:
    """Held-out test score against no processing per method and dataset (the validation s where
    no test split was scored), with ± 1 SE bars."""
    rows = summary_rows(runs)
    bars = {(r["dataset"], r["method"]): r["test"] if r["test"][0] is not None else r["val"] for r in rows}
    grouped_bars(path, sorted({r["dataset"] for r in rows}), sorted({r["method"] for r in rows}), bars,
                 "pick vs no processing (test; else val)", "Search methods on the same budget", zero_line=True)


def write_methods(sweep: str | Path) -> list[Path]:
    """Write methods.md, methods.csv and methods.png into ``sweep``; returns their paths."""
    runs = collect(Path(sweep))
    paths = write_files(sweep, "methods", markdown(runs), table_csv(runs), lambda png: plot(runs, png))
    log.info("methods table of %d runs: %s", len(runs), ", ".join(str(p) for p in paths))
    return paths


def several_methods(sweep: Path) -> bool:
    return len({OmegaConf.load(p.parent / "config.yaml").search.method for p in Path(sweep).rglob("results.json")}) > 1


class MethodsCallback(Callback):
    """Hydra callback: after a multirun over several search methods, write the table into its
    sweep dir (and log it to W&B unless logger=none)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        if not several_methods(sweep):
            return
        write_methods(sweep)
        if config.logger.kind != "none":
            log_methods(sweep, config.logger)


def log_methods(sweep: Path, logger: DictConfig) -> None:
    """The methods table of a multirun as a W&B table and image, in a run of its own (job type
    "methods") in the sweep's group."""
    from autodp.tracking.wandb_run import log_sweep_table  # wandb is imported only where asked for

    sweep = Path(sweep).resolve()
    runs = collect(sweep)
    rows = [{c: (str(getattr(r, c)) if c == "run_dir" else getattr(r, c)) for c in COLUMNS} for r in runs]
    log_sweep_table(sweep, logger, "methods", f"methods-{sweep.name}", COLUMNS, rows, {"runs": len(runs)})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:], "autodp.tracking.methods", write_methods))
