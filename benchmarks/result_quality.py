"""Is a search's answer real? Issue #11's acceptance, from real searches and their held-out test.

Each case is a `launch.py` search (default agent, eval.seeds paired fine-tune seeds, held-out
confirmation on) run once per search seed into --out/<case>/seed<N>; a finished run is read back,
a killed one resumes. Per run it prints the pick, its validation s ± SE, and the confirmation's
"winner vs none on test" delta ± SE, with the verdict the issue asks for:

- `noisy`, `noisy_all` (dataset=cmd_noisy, accel=none / all): the winner beats none on test by
  more than 2 SE, and is within noise (2 SE of the difference) of the best candidate of
  benchmarks/strategy_ranking.py scored on the same test split (run that first; its
  ranking.json is read from --ranking);
- `cmd`, `cmedqa2`: the test split does not contradict the run: a declared winner is not worse
  than none on test by more than 2 SE (no winner: nothing to contradict).

For `noisy_all` it also prints the Spearman correlation between the search's scores on the DPS
sample and the full-set validation scores of strategy_ranking, over the strategies both have.

Usage: python benchmarks/result_quality.py [--cases noisy,noisy_all,cmd,cmedqa2] [--seeds 0,1,2]
       [--out DIR] [--ranking DIR] [hydra overrides for every run ...]
"""
import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent
CASES = {"noisy": ["dataset=cmd_noisy"], "noisy_all": ["dataset=cmd_noisy", "accel=all"],
         "cmd": ["dataset=cmd"], "cmedqa2": ["dataset=cmedqa2"]}
Z = 2.0


def run(case: str, seed: int, out: Path, overrides: list[str]) -> dict:
    run_dir = out / case / f"seed{seed}"
    if not (run_dir / "results.json").exists():  # a killed run resumes from its journal
        subprocess.run([sys.executable, "launch.py", *CASES[case], f"seed={seed}", "search.confirm=true",
                        *overrides, f"hydra.run.dir={run_dir}"], cwd=ROOT, check=True)
    return json.loads((run_dir / "results.json").read_text())


def pm(mean: float | None, se: float | None) -> str:
    return "-" if mean is None else f"{mean:+.4f}" + ("" if se is None else f" ± {se:.4f}")


def best_candidate(ranking: dict | None) -> tuple[str, dict] | None:
    if ranking is None:
        return None
    return max(ranking["test"]["arms"].items(), key=lambda kv: kv[1]["delta"])


def verdict(case: str, res: dict, best: tuple[str, dict] | None) -> str:
    test = res.get("test")
    if test is None:
        return "no test split confirmed"
    if res["best"] == "none":
        return "no winner declared" + ("" if case.startswith("noisy") else ": nothing to contradict")
    arm = test["arms"][res["best"]]
    se = arm["se"] or math.inf
    if not case.startswith("noisy"):
        return "consistent" if arm["delta"] > -Z * se else "CONTRADICTED by test"
    beats = arm["delta"] > Z * se
    if best is None:
        return f"beats none on test: {beats}; no ranking.json to compare with"
    name, b = best
    gap, gap_se = b["delta"] - arm["delta"], math.hypot(se, b["se"] or math.inf)
    near = name == res["best"] or gap <= Z * gap_se
    return f"beats none on test: {beats}; within noise of the best candidate ({name}, {pm(b['delta'], b['se'])}): {near}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "result_quality")
    p.add_argument("--ranking", type=Path, default=ROOT / "outputs" / "strategy_ranking",
                   help="strategy_ranking.py's --out: <dir>/<dataset>/ranking.json")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    print("| case | seed | pick | validation s ± SE | winner vs none on test | test W/T/L | verdict |")
    print("|---|---|---|---|---|---|---|")
    for case in a.cases.split(","):
        dataset = CASES[case][0].split("=")[1]
        path = a.ranking / dataset / "ranking.json"
        ranking = json.loads(path.read_text()) if path.exists() else None
        for seed in map(int, a.seeds.split(",")):
            res = run(case, seed, a.out, a.overrides)
            row = next(r for r in res["table"] if r["strategy"] == res["best"])
            arm = (res.get("test") or {}).get("arms", {}).get(res["best"])
            wtl = "-" if arm is None else f"{arm['wins']}/{arm['ties']}/{arm['losses']}"
            print(f"| {case} | {seed} | {res['best']} ({res['pick']}) | {pm(row['s'], row['se'])} | "
                  f"{pm(arm and arm['delta'], arm and arm['se'])} | {wtl} | "
                  f"{verdict(case, res, best_candidate(ranking))} |", flush=True)
            if case == "noisy_all" and ranking is not None:
                sample = {r["strategy"]: r["s"] for r in res["table"] if r["s"] is not None and r["strategy"] != "none"}
                full = {k: v["delta"] for k, v in ranking["validation"]["arms"].items()}
                both = sorted(set(sample) & set(full))
                if len(both) >= 3:
                    rho, pval = spearmanr([sample[k] for k in both], [full[k] for k in both])
                    print(f"|  | | DPS sample vs full set, validation, {len(both)} strategies | Spearman {rho:+.2f} "
                          f"(p = {pval:.2f}) | | | |")


if __name__ == "__main__":
    main()
