"""The paper's Table 5 from a sweep: search time per acceleration setting and dataset, and the
share of time each setting saves against no acceleration, as Markdown, CSV and a PNG plot.

Run it on a sweep dir (``python -m autodp.tracking.grid multirun/<date>/<time>``), or let the
Hydra callback in conf/config.yaml write it when a multirun ends. A cell is any run dir under the
sweep with a ``results.json``; its setting is read from the saved ``config.yaml``.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from autodp.accel import accel_name
from autodp.tracking.methods import several_methods
from autodp.tracking.sweep_table import grouped_bars, main, write_files

log = logging.getLogger(__name__)
STAGES = ("dps", "agent", "eval.process", "eval.load_model", "eval.finetune", "eval.score")


@dataclass
class Cell:
    dataset: str
    accel: str  # "none" or the techniques on, e.g. "dps+pts+crm"
    seconds: float
    stages: dict[str, float]
    evaluations: int
    best: str
    run_dir: Path


def collect(sweep: Path) -> list[Cell]:
    cells = []
    for res_path in sorted(sweep.rglob("results.json")):
        run_dir = res_path.parent
        cfg = OmegaConf.load(run_dir / "config.yaml")
        res = json.loads(res_path.read_text())
        t = res["timings"]
        cells.append(Cell(cfg.dataset.name, accel_name(cfg), t["total"], {s: t.get(s, 0.0) for s in STAGES},
                          len(res["table"]), res["best"], run_dir))
    if not cells:
        raise FileNotFoundError(f"{sweep}: no run with a results.json below it")
    return cells


def saved(cells: list[Cell]) -> dict[tuple[str, str], float | None]:
    """Per (dataset, accel): % of the `none` cell's time saved; None without a `none` cell."""
    base = {c.dataset: c.seconds for c in cells if c.accel == "none"}
    return {(c.dataset, c.accel): None if c.dataset not in base else 100 * (1 - c.seconds / base[c.dataset])
            for c in cells}


def markdown(cells: list[Cell]) -> str:
    datasets = sorted({c.dataset for c in cells})
    accels = sorted({c.accel for c in cells}, key=lambda a: (a != "none", a.count("+"), a))
    by = {(c.dataset, c.accel): c for c in cells}
    save = saved(cells)
    lines = ["| accel | " + " | ".join(f"{d}: time (min) | {d}: saved (%)" for d in datasets) + " |",
             "|---|" + "---|---|" * len(datasets)]
    for a in accels:
        row = []
        for d in datasets:
            c, s = by.get((d, a)), save.get((d, a))
            row += ["-", "-"] if c is None else [f"{c.seconds / 60:.1f}", "-" if s is None else f"{s:.1f}"]
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def table_csv(cells: list[Cell]) -> str:
    save = saved(cells)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["dataset", "accel", "seconds", "saved_pct", "evaluations", "best", *STAGES, "run_dir"])
    for c in cells:
        s = save[(c.dataset, c.accel)]
        w.writerow([c.dataset, c.accel, f"{c.seconds:.3f}", "" if s is None else f"{s:.1f}", c.evaluations, c.best,
                    *(f"{c.stages[k]:.1f}" for k in STAGES), c.run_dir])
    return out.getvalue()


def plot(cells: list[Cell], path: Path) -> None:
    datasets = sorted({c.dataset for c in cells})
    accels = sorted({c.accel for c in cells}, key=lambda a: (a != "none", a.count("+"), a))
    grouped_bars(path, datasets, accels, {(c.dataset, c.accel): (c.seconds / 60, None) for c in cells},
                 "search time (min)", "Search time by acceleration (cf. paper Table 5)")


def write_grid(sweep: str | Path) -> list[Path]:
    """Write grid.md, grid.csv and grid.png into ``sweep``; returns their paths."""
    cells = collect(Path(sweep))
    paths = write_files(sweep, "grid", markdown(cells), table_csv(cells), lambda png: plot(cells, png))
    log.info("timing grid of %d runs: %s", len(cells), ", ".join(str(p) for p in paths))
    return paths


class GridCallback(Callback):
    """Hydra callback: after a multirun, write the grid into its sweep dir (and log it to W&B
    unless logger=none). Hydra calls every hook; the base class's no-ops keep it from warning
    about the ones not needed here."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if several_methods(Path(config.hydra.sweep.dir)):  # cells would mix methods; the methods table has the times
            return
        try:
            write_grid(config.hydra.sweep.dir)
        except FileNotFoundError as e:  # every cell failed: Hydra has reported why
            log.warning("no timing grid: %s", e)
            return
        if config.logger.kind != "none":
            log_grid(Path(config.hydra.sweep.dir), config.logger)


def log_grid(sweep: Path, logger: DictConfig) -> None:
    """The timing grid of a multirun as a W&B table and image, in a run of its own in the sweep's group."""
    from autodp.tracking.wandb_run import log_sweep_table  # wandb is imported only where asked for

    sweep = Path(sweep).resolve()
    cells = collect(sweep)
    save = saved(cells)
    columns = ("dataset", "accel", "seconds", "saved_pct", "evaluations", "best", *STAGES, "run_dir")
    rows = [dict(dataset=c.dataset, accel=c.accel, seconds=c.seconds, saved_pct=save[(c.dataset, c.accel)],
                 evaluations=c.evaluations, best=c.best, run_dir=str(c.run_dir), **c.stages) for c in cells]
    log_sweep_table(sweep, logger, "grid", f"timing-grid-{sweep.name}", columns, rows, {"cells": len(cells)})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:], "autodp.tracking.grid", write_grid))
