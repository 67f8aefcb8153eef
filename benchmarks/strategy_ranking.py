"""Does R(f) on the validation set rank strategies as rows the search never saw do?

A fixed candidate list (every single team, Cleaning then each other team, all four) is applied to
the dataset's training rows and fine-tuned with k paired seeds; each strategy is scored on the
validation split (what the search sees) and on the held-out test split, against no processing.
Prints s ± SE on both, per-row wins/ties/losses on test, and the Spearman rank correlation of the
two columns. Results are journaled under --out, so a killed run resumes.

Usage: python benchmarks/strategy_ranking.py [--dataset cmd_noisy] [--seeds 3] [--out DIR] [overrides ...]
"""
import argparse
import json
from pathlib import Path

from hydra import compose, initialize_config_dir
from scipy.stats import spearmanr
from tqdm import tqdm

import autodp.ops  # noqa: F401 - registers the operators
from autodp.confirm import compare
from autodp.data.io import atomic_write
from autodp.data.specs import data_specs, heldout_test_spec
from autodp.evaluate.evaluator import evaluate
from autodp.evaluate.request import EvalRequest
from autodp.store import RunStore
from autodp.strategy import Strategy

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = ["cleaning", "optimization", "generation", "selection", "cleaning>optimization",
              "cleaning>generation", "cleaning>selection", "cleaning>optimization>generation>selection"]


def run_many(fn, reqs):
    return (fn(q) for q in tqdm(reqs, desc="evaluations", unit="eval"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="cmd_noisy")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "strategy_ranking")
    p.add_argument("--strategies", default=",".join(CANDIDATES))
    p.add_argument("overrides", nargs="*", help="Hydra overrides on the default config")
    a = p.parse_args()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset={a.dataset}", f"eval.seeds={a.seeds}", *a.overrides])
    out = a.out / a.dataset
    specs = data_specs(cfg, out / "splits")
    test = heldout_test_spec(cfg, out / "splits")
    if test is None:
        raise SystemExit(f"dataset={a.dataset} names no test split")
    template = EvalRequest.from_config(cfg, *specs, out_dir=str(out / "datasets"))
    strategies = [Strategy.parse(k) for k in a.strategies.split(",")]
    tie = cfg.search.confirm_tie
    val = compare(template, template.val, strategies, RunStore(out / "val"), run_many, evaluate, tie)
    tst = compare(template, test, strategies, RunStore(out / "test"), run_many, evaluate, tie)

    def pm(arm: dict) -> str:
        return f"{arm['delta']:+.4f}" + ("" if arm["se"] is None else f" ± {arm['se']:.4f}")

    print(f"\n{a.dataset}: {a.seeds} paired seeds, validation {val['rows']} rows, test {tst['rows']} rows; "
          f"r0 validation {val['r0']:.4f}, test {tst['r0']:.4f}")
    print("| strategy | rows kept | s validation | s test | test rows W/T/L |")
    print("|---|---|---|---|---|")
    keys = [k for k in val["arms"] if k in tst["arms"]]
    for k in keys:
        v, t = val["arms"][k], tst["arms"][k]
        print(f"| {k} | {v['rows_out']} | {pm(v)} | {pm(t)} | {t['wins']}/{t['ties']}/{t['losses']} |")
    rho, pval = spearmanr([val["arms"][k]["delta"] for k in keys], [tst["arms"][k]["delta"] for k in keys])
    print(f"Spearman(validation, test) over {len(keys)} strategies: {rho:+.2f} (p = {pval:.3f})")
    failed = {**val["failed"], **tst["failed"]}
    if failed:
        print("failed:", failed)
    with atomic_write(out / "ranking.json") as f:
        json.dump({"validation": val, "test": tst, "spearman": rho, "p": pval}, f, indent=1)


if __name__ == "__main__":
    main()
