"""What the best possible filter gains on a dataset with injected noise, and whether R(f) can see it.

The noise manifest says which rows are corrupted, so the oracle filter (drop exactly those rows), a
filter of one noise kind, and a perfect repair (the same rows before the noise) can be fine-tuned
with k paired seeds and scored on the held-out test split against the unprocessed rows, beside the
Cleaning team. Prints s ± SE (each arm's own per-seed differences) and the per-seed values.
Results are cached under --out, so a killed run resumes.

Usage: python benchmarks/oracle_filter.py [--dataset cmd_noisy] [--seeds 4] [--out DIR] [overrides ...]
e.g. +finetune.max_steps=25 (the same steps for every arm), eval=rouge_l (R from generations).
"""
import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from hydra import compose, initialize_config_dir

import autodp.ops  # noqa: F401 - registers the operators
from autodp.data.io import atomic_write, load_rows, write_rows
from autodp.data.specs import data_specs, heldout_test_spec
from autodp.evaluate.evaluator import evaluate
from autodp.evaluate.request import EvalRequest
from autodp.resources import resolve_path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="cmd_noisy")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--kind", default="swap", help="the one noise kind the single-kind filter drops")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "oracle_filter")
    p.add_argument("overrides", nargs="*", help="Hydra overrides on the default config")
    a = p.parse_args()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset={a.dataset}", f"eval.seeds={a.seeds}", *a.overrides])
    if cfg.dataset.get("noise") is None:
        raise SystemExit(f"dataset={a.dataset} has no injected noise (dataset.noise) to know the corrupted rows by")
    out = a.out / a.dataset
    specs = data_specs(cfg, out / "splits")
    template = EvalRequest.from_config(cfg, *specs, out_dir=str(out / "datasets"))
    template = replace(template, val=heldout_test_spec(cfg, out / "splits"), eval={**template.eval, "per_row": True})
    train = resolve_path(cfg.dataset.train)
    noisy = load_rows(train)
    kinds = {m["id"]: m["kind"] for m in map(json.loads, (train.parent / "manifest.jsonl").read_text().splitlines())}
    source = load_rows(resolve_path(cfg.dataset.noise.source), cfg.dataset.noise.rows)
    arms = {"oracle (corrupted rows dropped)": [r for r in noisy if r["id"] not in kinds],
            f"{a.kind} rows dropped": [r for r in noisy if kinds.get(r["id"]) != a.kind],
            "rows before the noise": source}
    reqs = {"none": template, "cleaning": replace(template, strategy="cleaning")}
    for name, rows in arms.items():
        path = out / "arms" / f"{name.split()[0]}-{a.kind}.jsonl"
        write_rows(path, rows)
        reqs[name] = replace(template, train={"path": str(path), "limit": None})
    results = {}
    for name, req in reqs.items():
        cached = out / "results" / f"{req.signature}.json"
        if not cached.exists():
            with atomic_write(cached) as f:
                json.dump(evaluate(req).as_dict(), f)
        results[name] = json.loads(cached.read_text())
    base = results.pop("none")
    print(f"\n{a.dataset}: {a.seeds} paired seeds, test rows {len(base['row_scores'][0])}, "
          f"r0 per seed {', '.join(f'{x:.4f}' for x in base['seed_scores'])}")
    print("| training rows | rows | s test ± SE | in SE | per-seed s |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        if r["status"] != "ok":
            print(f"| {name} | failed: {r['error']} | | | |")
            continue
        d = [x - y for x, y in zip(r["seed_scores"], base["seed_scores"])]
        mean, se = statistics.fmean(d), statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
        print(f"| {name} | {r['rows_out']} | {mean:+.4f} ± {se:.4f} | {mean / se:+.1f} | "
              f"{', '.join(f'{x:+.3f}' for x in d)} |")


if __name__ == "__main__":
    main()
