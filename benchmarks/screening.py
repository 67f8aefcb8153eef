"""Build the screening model F on the shipped CMD rows and report how good and how fast it is.

Usage: python benchmarks/screening.py [--holdout NAME=FILE ...] [hydra overrides, e.g. screening.beta=2]
Prints each rule's hit rate, F's precision/recall/F1 on held-out rows (a) against the weak
labels and (b) against known injected noise, F beside the rules alone and the classifier alone,
the same on further held-out files (cMedQA2's eval ships; add others with --holdout, e.g. CMD's
1,000-row eval file of the shared data), training time, and inference speed with the embedding
cache off. Counts and metrics only.
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy loads: the machine is shared
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autodp.accel.screening import (build_screening, compose, evaluate_holdout, training_rows,  # noqa: E402
                                    weak_labels)
from autodp.data.io import load_rows  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--holdout", action="append", default=[], metavar="NAME=FILE",
                    help="a further held-out JSONL file to score F on (repeatable)")
args, overrides = parser.parse_known_args()
EXTRA = {"cmedqa2 eval (other site, shipped)": ROOT / "autodp/data/samples/cmedqa2/eval.jsonl",
         **{name: Path(path) for name, _, path in (h.partition("=") for h in args.holdout)}}


def line(name: str, m: dict) -> str:
    return (f"  {name:28s} P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}  "
            f"({m['noisy']} noisy of {m['rows']} rows, {m['flagged']} flagged)")


def report(metrics: dict) -> None:
    print(line("(a) F vs weak labels", metrics["weak_labels"]))
    print(line("(b) F vs known noise", metrics["known_noise"]))
    print(line("    rules only", metrics["known_noise_rules_only"]))
    print(line("    classifier only", metrics["known_noise_classifier_only"]))
    print("    recall by kind (F / rules / classifier): " + ", ".join(
        f"{k} {v['F']:.2f}/{v['rules']:.2f}/{v['classifier']:.2f} (n={v['rows']})"
        for k, v in metrics["known_noise_recall_by_kind"].items()))


cfg = compose(overrides)
rows = training_rows(cfg)
t0 = time.perf_counter()
model = build_screening(rows, cfg.screening)
build_s = time.perf_counter() - t0
m = model.metrics
print(f"\nF built on {m['rows']} rows {m['split_rows']} in {build_s:.1f} s (embedding {m['seconds']['embed']:.1f} s, "
      f"embeddings of the real rows cached across runs; logistic regression {m['seconds']['train']:.1f} s "
      f"for {len(cfg.screening.l2)} penalties); threshold {m['threshold']}, l2 {m['l2']}")
print(f"weak labels: {m['weak_noisy_rate']:.1%} of rows noisy; rule hit rates:")
for name, rate in m["rule_hit_rate"].items():
    print(f"  {name:24s} {rate:7.2%}  ({round(rate * m['rows'])} rows)")
print(f"\nheld-out split of the same file ({m['split_rows']['test']} rows):")
report(m)
for name, path in EXTRA.items():
    extra = load_rows(path)
    print(f"\n{name}, {len(extra)} rows:")
    report(evaluate_holdout(model, extra, cfg.screening.holdout, int(cfg.screening.seed) + 3))

t0 = time.perf_counter()
flags = model.predict(rows, cache=False)
seconds = time.perf_counter() - t0
embedded = int((~weak_labels(rows)).sum())
print(f"\ninference, cache off: {len(rows)} rows in {seconds:.1f} s = {len(rows) / seconds:.0f} rows/s "
      f"({embedded} rule-clean rows embedded, {embedded / seconds:.0f} of them/s); "
      f"F flags {flags.mean():.1%}, so PTS would skip {1 - flags.mean():.1%} of these rows")
