"""The paper's Table 5 on the CPU default, measured fairly: search time per acceleration setting
and dataset, % saved against `none`, and whether the accelerated search's winner is as good.

Usage: python benchmarks/accel_grid.py [--datasets cmd,cmedqa2] [--accels none,dps,dps_pts,all]
                                       [--seeds 0,1,2] [hydra overrides...]

Every cell runs `python launch.py` in its own process with its own answer caches: a fresh LLM
answer cache and a fresh CRM folder, so no cell reuses another's work. What a lab would prepare
once, before any search, is shared and built before the clock starts: converted models, the
evaluator's pre-warmed base, the screening model F and the rows' embeddings. The grid is
written to <out>/grid.{md,csv,png}. Then the winners of `none` and of every other cell are
re-scored the same way (full training set, no sampling, no cache, --seeds) to compare their
quality with the seed noise; a winner of a cell with PTS is applied with F, as that search's own
export applies it. --reuse re-scores the winners of an earlier run's --out without searching.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from omegaconf import OmegaConf  # noqa: E402

from autodp.accel.screening import compose, screening_model_path  # noqa: E402
from autodp.data.io import load_spec  # noqa: E402
from autodp.data.specs import data_specs  # noqa: E402
from autodp.evaluate.evaluator import evaluate  # noqa: E402
from autodp.evaluate.lm import load_base  # noqa: E402
from autodp.evaluate.request import EvalRequest  # noqa: E402
from autodp.resources import cache_root  # noqa: E402
from autodp.run import dps_train  # noqa: E402
from autodp.tracking.grid import write_grid  # noqa: E402

SHARED = ("models", "gguf", "bases", "screening", "embeddings")  # prepared once, before the clock

parser = argparse.ArgumentParser()
parser.add_argument("--datasets", default="cmd,cmedqa2")
parser.add_argument("--accels", default="none,dps,dps_pts,all")
parser.add_argument("--seeds", default="0,1,2")
parser.add_argument("--reuse", action="store_true", help="re-score the cells already in --out")
parser.add_argument("--out", default=str(ROOT / "outputs" / "accel_grid" / time.strftime("%Y-%m-%d_%H-%M-%S")))
args, overrides = parser.parse_known_args()
out = Path(args.out)
shared = cache_root()


def prepare(dataset: str) -> None:
    """Build what every cell of ``dataset`` shares (cached under $AUTODP_CACHE)."""
    cfg = compose([f"dataset={dataset}", "accel=all", *overrides])
    specs = data_specs(cfg, out / "prepare" / dataset)
    load_base(OmegaConf.to_container(cfg.finetune, resolve=True), load_spec(specs.pool))
    dps_train(cfg, specs.train, out / "prepare" / dataset, screening_model_path(cfg))  # F and the embeddings


def run_cell(dataset: str, accel: str) -> Path:
    cache = out / "caches" / f"{dataset}-{accel}"
    cache.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        (shared / name).mkdir(parents=True, exist_ok=True)
        if not (cache / name).exists():
            (cache / name).symlink_to(shared / name)
    run_dir = out / f"{dataset}-{accel}"
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {**os.environ, "AUTODP_CACHE": str(cache)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "launch.py", f"dataset={dataset}", f"accel={accel}", *overrides,
                    f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env, check=True,
                   stdout=open(out / f"{dataset}-{accel}.log", "w"), stderr=subprocess.STDOUT)
    print(f"{dataset:8s} {accel:8s} {time.perf_counter() - t0:7.1f} s  best "
          f"{json.loads((run_dir / 'results.json').read_text())['best']}", flush=True)
    return run_dir


def rescore(dataset: str, winners: set[tuple[str, bool]], seeds: list[int]) -> dict[tuple[str, bool], list[float]]:
    """R of each (strategy, with PTS) on the full training set, per seed: no sampling, no cache."""
    cfg = compose([f"dataset={dataset}", "accel=none", *overrides])
    specs = data_specs(cfg, out / "prepare" / dataset)
    base = EvalRequest.from_config(cfg, *specs, out_dir=str(out / "rescore" / dataset))
    screener = str(screening_model_path(cfg))
    return {(s, pts): [evaluate(replace(base, strategy=s, seed=seed, seeds=1, screener=screener if pts else None)).score
                       for seed in seeds] for s, pts in sorted(winners)}


out.mkdir(parents=True, exist_ok=True)
datasets, accels = args.datasets.split(","), args.accels.split(",")
seeds = [int(s) for s in args.seeds.split(",")]
if not args.reuse:
    for d in datasets:
        prepare(d)
    for d in datasets:
        for a in accels:
            run_cell(d, a)
    write_grid(out)
print("\n" + (out / "grid.md").read_text())
best = {}
for d in datasets:
    for a in accels:
        strategy = json.loads((out / f"{d}-{a}" / "results.json").read_text())["best"]
        best[(d, a)] = (strategy, strategy != "none" and bool(compose([f"accel={a}"]).accel.pts.enabled))

print(f"winners re-scored on the full training set, no acceleration, seeds {seeds}:")
for d in datasets:
    scores = rescore(d, {best[(d, a)] for a in accels}, seeds)
    ref = scores[best[(d, "none")]]
    noise = statistics.stdev(ref) if len(ref) > 1 else float("nan")
    for a in accels:
        r = scores[best[(d, a)]]
        gap = statistics.mean(r) - statistics.mean(ref)
        print(f"  {d:8s} {a:8s} best {best[(d, a)][0] + (' (PTS)' if best[(d, a)][1] else ''):40s} "
              f"R {statistics.mean(r):.4f} "
              f"(vs none's winner {gap:+.4f}; seed SD of none's winner {noise:.4f})")
