"""The Cleaning team at scale: process=local (rows in memory) against process=ray (the export's
streaming path: sharded reads, Parquet steps on disk) with 1 and 2 CPUs.

Synthetic Chinese QA rows: each pairs a question of the shipped CMD sample with the first half of
one answer and the second half of another, drawn at random (so rows are distinct), and a share
``--dup`` of them are planted near-duplicates of an earlier row (one character deleted, one comma
changed: what a repost looks like). The rows are written once to a JSONL file (under
``--data-dir``), which each engine reads in its own process. The table gives rows/s per operator
and overall; the peak memory of the driver and of the Ray workers (sampled: the largest single
worker and the largest sum, each also without the object store's shared pages, i.e. the workers'
own heap); the machine's lowest available memory; and the precision and recall of near-duplicate
removal against the planted duplicates. The local engine is skipped above ``--local-max`` rows
(its memory grows with the rows; say so in RESULTS rather than swap the machine).

``--ops`` runs some of the team's operators only (in the team's order), e.g. ``--ops minhash_dedup``
for the one step whose memory grows with the rows.

Usage: python benchmarks/scale.py [--rows 100000] [--dup 0.1] [--engines local,ray1,ray2]
                                  [--shuffle sort_shuffle_pull_based] [--local-max 300000] [--ops a,b]
"""
import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent


def synthetic(n: int, dup: float, seed: int = 0) -> Iterator[tuple[dict, bool]]:
    """(row, planted) in order. Each row is kept as three indices (or a source and a cut), not as
    text, so that 10M rows are generated in about a GB."""
    from autodp.data.io import load_rows
    from autodp.resources import resolve_path

    pool = load_rows(resolve_path("pkg:autodp/data/samples/cmd/train.jsonl"))
    rng, made = random.Random(seed), []

    def row(i: int) -> dict:
        rec = made[i]
        if rec[0] == "dup":
            src = row(rec[1])
            a = src["output"]
            return {**src, "id": f"syn{i}", "output": (a[:rec[2]] + a[rec[2] + 1:]).replace("，", ",", 1)}
        q, a1, a2 = (pool[j] for j in rec[1:])
        return {"id": f"syn{i}", "instruction": q["instruction"], "input": "",
                "output": a1["output"][:len(a1["output"]) // 2] + a2["output"][len(a2["output"]) // 2:]}

    for i in range(n):
        if made and rng.random() < dup:
            src = rng.randrange(len(made))
            a = row(src)["output"]
            made.append(("dup", src, rng.randrange(len(a)) if a else 0))
        else:
            made.append(("new", rng.randrange(len(pool)), rng.randrange(len(pool)), rng.randrange(len(pool))))
        yield row(i), made[-1][0] == "dup"


def data_file(n: int, dup: float, folder: Path) -> tuple[Path, Path]:
    """The rows file and the planted mask (npy), written once per (n, dup)."""
    path, mask = folder / f"syn-{n}-{dup}.jsonl", folder / f"syn-{n}-{dup}.planted.npy"
    if not path.exists() or not mask.exists():
        folder.mkdir(parents=True, exist_ok=True)
        planted = np.zeros(n, bool)
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, encoding="utf-8") as f:
            for i, (r, p) in enumerate(synthetic(n, dup)):
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
                planted[i] = p
        np.save(mask, planted)
        Path(f.name).rename(path)
    return path, mask


def memory_peaks(stop: threading.Event, peak: dict[str, float]) -> None:
    """Peaks over this machine's Ray workers (GB), sampled every 0.2 s: ``rss`` and ``rss_sum``
    count the object store's shared pages once per worker that maps them; ``own`` and ``own_sum``
    are RSS less shared pages (a worker's heap); ``low_avail``: the machine's lowest available memory."""
    while not stop.is_set():
        mem = [p.info["memory_info"] for p in psutil.process_iter(["cmdline", "memory_info"])
               if (p.info["cmdline"] or [""])[0].startswith("ray::") and p.info["memory_info"]]
        rss, own = [m.rss / 2**30 for m in mem], [(m.rss - m.shared) / 2**30 for m in mem]
        for k, v in (("rss", max(rss, default=0)), ("rss_sum", sum(rss)), ("own", max(own, default=0)),
                     ("own_sum", sum(own))):
            peak[k] = max(peak[k], v)
        peak["low_avail"] = min(peak["low_avail"], psutil.virtual_memory().available / 2**30)
        stop.wait(0.2)


def ids_to_mask(ids: Iterator[str], n: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    for i in ids:
        mask[int(i[3:])] = True
    return mask


def one(engine: str, path: Path, mask: Path, n: int, shuffle: str, ops_only: list[str] | None) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import autodp.ops  # noqa: F401 - registers the operators
    from autodp.ops.base import spec_name
    from autodp.ops.teams import build_team
    from autodp.process import build_engine
    from autodp.strategy import Strategy, Team

    overrides = [] if engine == "local" else ["process=ray", f"process.num_cpus={engine[3:]}", "process.progress=false",
                                              f"process.shuffle={shuffle}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    teams = OmegaConf.to_container(cfg.teams, resolve=True)
    if ops_only:
        teams["cleaning"] = [s for s in teams["cleaning"] if spec_name(s) in ops_only]
    planted = np.load(mask)
    eng = build_engine(OmegaConf.to_container(cfg.process, resolve=True))
    stop = threading.Event()
    peak = {"rss": 0.0, "rss_sum": 0.0, "own": 0.0, "own_sum": 0.0, "low_avail": float("inf")}
    threading.Thread(target=memory_peaks, args=(stop, peak), daemon=True).start()
    ops = {}
    if engine == "local":
        from autodp.data.io import load_rows

        startup, t0 = 0.0, time.perf_counter()
        rows = load_rows(path)  # the engine's read: every row parsed and checked, into memory
        ops["read"] = n / (time.perf_counter() - t0)
        for op in build_team(Team.CLEANING, teams):
            before = ids_to_mask((r["id"] for r in rows), n) if op.name == "minhash_dedup" else None
            rows, rep = eng.run(op, rows)
            ops[op.name] = rep.rows_in / max(rep.seconds, 1e-9)
            if before is not None:
                dropped = before & ~ids_to_mask((r["id"] for r in rows), n)
        kept, total = len(rows), time.perf_counter() - t0
    else:
        from autodp.accel.crm import step_keys
        from autodp.process.ray_stream import rows_of

        t0 = time.perf_counter()
        eng._connect()
        startup = time.perf_counter() - t0
        work = Path(tempfile.mkdtemp(dir=path.parent, prefix=".steps-"))
        try:
            pipe = eng.pipeline(work)
            t0 = time.perf_counter()
            read_key, info = pipe.read({"path": str(path)}, None)
            ops["read"] = n / (time.perf_counter() - t0)
            chain = build_team(Team.CLEANING, teams)
            _, last, reports = pipe.run(Strategy((Team.CLEANING,)), {"path": str(path)}, teams, {})
            total = time.perf_counter() - t0
            for rep in reports:
                ops[rep.op] = rep.rows_in / max(rep.seconds, 1e-9)
            keys = step_keys(info["content_hash"], [(Team.CLEANING, chain)])[0]
            at = [op.name for op in chain].index("minhash_dedup")
            before, after = (ids_to_mask((json.loads(r["row"])["id"] for r in rows_of(work / k)), n)
                             for k in (keys[at - 1] if at else read_key, keys[at]))
            dropped = before & ~after
            kept = json.loads((last / "report.json").read_text())["rows"]
        finally:
            shutil.rmtree(work, ignore_errors=True)
    stop.set()
    hit = int((dropped & planted).sum())
    return {"engine": engine, "rows": n, "kept": kept, "seconds": total, "startup": startup, "rows_per_s": n / total,
            "ops": ops, "precision": hit / max(int(dropped.sum()), 1), "recall": hit / max(int(planted.sum()), 1),
            "driver_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "mem_gb": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dup", type=float, default=0.1)
    p.add_argument("--engines", default="local,ray1,ray2")
    p.add_argument("--shuffle", default="sort_shuffle_pull_based", help="process.shuffle of the Ray engines")
    p.add_argument("--local-max", type=int, default=300_000, help="skip the local engine above this many rows")
    p.add_argument("--data-dir", type=Path, default=ROOT / ".cache" / "scale")
    p.add_argument("--ops", help="comma-separated Cleaning operators to run (default: the whole team)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # a single engine, in this process
    a = p.parse_args()
    if a.ops and "minhash_dedup" not in a.ops.split(","):
        p.error("--ops must include minhash_dedup: the table reports its precision and recall")
    t0 = time.perf_counter()
    path, mask = data_file(a.rows, a.dup, a.data_dir)
    if a.one:
        print(json.dumps(one(a.one, path, mask, a.rows, a.shuffle, a.ops and a.ops.split(","))))
        return
    print(f"data: {path} ({path.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    results = []
    for engine in a.engines.split(","):
        if engine == "local" and a.rows > a.local_max:
            print(f"local: skipped, {a.rows:,} rows > --local-max {a.local_max:,}", file=sys.stderr)
            continue
        r = subprocess.run([sys.executable, __file__, "--one", engine, "--rows", str(a.rows), "--dup", str(a.dup),
                            "--shuffle", a.shuffle, "--data-dir", str(a.data_dir), *(["--ops", a.ops] if a.ops else [])],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{engine} failed:\n{r.stderr[-3000:]}")
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    names = list(dict.fromkeys(k for r in results for k in r["ops"]))
    print(f"\n{a.rows:,} synthetic rows, {a.dup:.0%} planted near-duplicates, Ray shuffle {a.shuffle}; rows/s per step"
          + (f"; operators: {a.ops}" if a.ops else ""))
    print("| engine | " + " | ".join(names) + " | team rows/s | seconds (+ start) | dedup precision / recall | "
          "driver peak GB | largest Ray worker GB (own) | all Ray workers GB (own) | lowest available GB |")
    print("|---" * (len(names) + 8) + "|")
    for r in results:
        o, m = r["ops"], r["mem_gb"]
        print(f"| {r['engine']} | " + " | ".join(f"{o[k]:,.0f}" if k in o else "-" for k in names) +
              f" | {r['rows_per_s']:,.0f} | {r['seconds']:.1f} (+{r['startup']:.1f}) | {r['precision']:.3f} / {r['recall']:.3f} | "
              f"{r['driver_gb']:.2f} | {m['rss']:.2f} ({m['own']:.2f}) | {m['rss_sum']:.2f} ({m['own_sum']:.2f}) | "
              f"{m['low_avail']:.1f} |")


if __name__ == "__main__":
    main()
