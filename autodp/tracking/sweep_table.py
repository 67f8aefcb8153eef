"""What every table over a sweep's runs shares (the timing grid, autodp/tracking/grid.py; the
methods table, autodp/tracking/methods.py): its Markdown, CSV and PNG files, each written
atomically, its grouped bar chart and its command line."""
from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Callable, Sequence

from autodp.data.io import atomic_write

Bar = tuple[float, float | None]  # height, ± error (None: no error bar)


def mean_se(xs: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error (NaN for a single value)."""
    return statistics.fmean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def write_files(sweep: str | Path, stem: str, md: str, table_csv: str, draw: Callable[[Path], None]) -> list[Path]:
    """``<stem>.md``, ``<stem>.csv`` and ``<stem>.png`` (drawn by ``draw``) in ``sweep``; their paths."""
    paths = [Path(sweep) / f"{stem}.{ext}" for ext in ("md", "csv", "png")]
    for path, text in zip(paths, (md, table_csv)):
        with atomic_write(path) as f:
            f.write(text)
    draw(paths[2])
    return paths


def grouped_bars(path: Path, groups: Sequence[str], series: Sequence[str], bars: dict[tuple[str, str], Bar],
                 ylabel: str, title: str, zero_line: bool = False) -> None:
    """One bar per (group, series), side by side within a group; a missing pair draws no height."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 + 1.8 * len(groups)), 3.6))
    for i, s in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
        vals = [bars.get((g, s), (0.0, None)) for g in groups]
        errs = [e or 0.0 for _, e in vals]
        ax.bar(xs, [v or 0.0 for v, _ in vals], width, yerr=errs if any(errs) else None, capsize=2, label=s)
    if zero_line:
        ax.axhline(0, color="#555", lw=0.8)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def main(argv: list[str], module: str, write: Callable[[str], list[Path]]) -> int:
    """``python -m <module> <sweep-dir>``: write the table's files and print their paths."""
    if len(argv) != 1:
        print(f"usage: python -m {module} <sweep-dir>", file=sys.stderr)
        return 2
    for p in write(argv[0]):
        print(p)
    return 0
