"""The Cleaning team at scale, process=local against process=ray with 1 and 2 CPUs.

Synthetic Chinese QA rows: each pairs a question of the shipped CMD sample with the first half of
one answer and the second half of another, drawn at random (so rows are distinct), and a share ``--dup`` of them are planted near-duplicates of an
earlier row (one character deleted, one comma changed: what a repost looks like). Each engine runs
the Cleaning team of conf/teams on the same rows in its own process; the table gives rows/s per
operator and overall, the peak memory of the driver and of the Ray workers (sampled), and the
precision and recall of near-duplicate removal against the planted duplicates.

Usage: python benchmarks/scale.py [--rows 100000] [--dup 0.1] [--engines local,ray1,ray2]
"""
import argparse
import json
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def synthetic(n: int, dup: float, seed: int = 0) -> tuple[list[dict], set[str]]:
    from autodp.data.io import load_rows
    from autodp.resources import resolve_path

    pool = load_rows(resolve_path("pkg:autodp/data/samples/cmd/train.jsonl"))
    rng, rows, planted = random.Random(seed), [], set()
    for i in range(n):
        if rows and rng.random() < dup:
            src = rows[rng.randrange(len(rows))]
            a = src["output"]
            k = rng.randrange(len(a)) if a else 0
            rows.append({**src, "id": f"syn{i}", "output": (a[:k] + a[k + 1:]).replace("，", ",", 1)})
            planted.add(f"syn{i}")
        else:
            q, a1, a2 = rng.choice(pool), rng.choice(pool)["output"], rng.choice(pool)["output"]
            answer = a1[:len(a1) // 2] + a2[len(a2) // 2:]  # two halves: rows drawn alike stay rare
            rows.append({"id": f"syn{i}", "instruction": q["instruction"], "input": "", "output": answer})
    return rows, planted


def worker_peak(stop: threading.Event, peak: list[float]) -> None:
    """The largest summed RSS of this process's Ray workers, sampled every 0.2 s (GB)."""
    me = psutil.Process()
    while not stop.is_set():
        rss = 0
        for c in me.children(recursive=True):
            try:
                rss += c.memory_info().rss if c.cmdline()[:1] and c.cmdline()[0].startswith("ray::") else 0
            except psutil.Error:  # a worker that ended meanwhile
                pass
        peak[0] = max(peak[0], rss / 2**30)
        stop.wait(0.2)


def one(engine: str, n: int, dup: float) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import autodp.ops  # noqa: F401 - registers the operators
    from autodp.ops.teams import build_team
    from autodp.process import build_engine
    from autodp.strategy import Team

    overrides = [] if engine == "local" else ["process=ray", f"process.num_cpus={engine[3:]}", "process.progress=false"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    rows, planted = synthetic(n, dup)
    eng = build_engine(OmegaConf.to_container(cfg.process, resolve=True))
    t0 = time.perf_counter()
    eng.run(build_team(Team.CLEANING, OmegaConf.to_container(cfg.teams, resolve=True))[0], rows[:10])  # starts Ray
    startup = time.perf_counter() - t0
    stop, peak = threading.Event(), [0.0]
    threading.Thread(target=worker_peak, args=(stop, peak), daemon=True).start()
    ops, t0 = {}, time.perf_counter()
    for op in build_team(Team.CLEANING, OmegaConf.to_container(cfg.teams, resolve=True)):
        before = {r["id"] for r in rows}
        rows, rep = eng.run(op, rows)
        ops[op.name] = rep.rows_in / max(rep.seconds, 1e-9)
        if op.name == "minhash_dedup":
            dropped = before - {r["id"] for r in rows}
            ops["precision"] = len(dropped & planted) / max(len(dropped), 1)
            ops["recall"] = len(dropped & planted) / max(len(planted & before), 1)
    total = time.perf_counter() - t0
    stop.set()
    return {"engine": engine, "rows": n, "kept": len(rows), "seconds": total, "startup": startup, "rows_per_s": n / total, "ops": ops,
            "driver_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "workers_gb": peak[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dup", type=float, default=0.1)
    p.add_argument("--engines", default="local,ray1,ray2")
    p.add_argument("--one", help=argparse.SUPPRESS)  # a single engine, in this process
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.rows, a.dup)))
        return
    results = []
    for engine in a.engines.split(","):
        r = subprocess.run([sys.executable, __file__, "--one", engine, "--rows", str(a.rows), "--dup", str(a.dup)],
                           capture_output=True, text=True, check=True)
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    names = [k for k in results[0]["ops"] if k not in ("precision", "recall")]
    print(f"\n{a.rows:,} synthetic rows, {a.dup:.0%} planted near-duplicates; rows/s per operator")
    print("| engine | " + " | ".join(names) + " | team rows/s | seconds (+ start) | dedup precision / recall | "
          "driver peak GB | Ray workers peak GB |")
    print("|---" * (len(names) + 6) + "|")
    for r in results:
        o = r["ops"]
        print(f"| {r['engine']} | " + " | ".join(f"{o[k]:,.0f}" for k in names) +
              f" | {r['rows_per_s']:,.0f} | {r['seconds']:.1f} (+{r['startup']:.1f}) | {o['precision']:.3f} / {o['recall']:.3f} | "
              f"{r['driver_gb']:.2f} | {r['workers_gb']:.2f} |")


if __name__ == "__main__":
    main()
