"""The paper's final evaluation on this machine (issue #13): the search's winner on `cmd_noisy`
against no processing and against all-process, by the local judge and the reference metrics.

Usage: python benchmarks/judge.py --winner RUN_DIR [--all-process SPEC] [--clean SPEC]
                                  [--questions 100] [--out DIR] [hydra overrides...]

One `python launch.py task=compare finetune=smollm2_lora dataset=cmd_noisy` (autodp/compare):
the arms are the winner's export (a search run dir), `none`, all-process (a run dir of
`search=all_process`, or the strategy key applied here) and, with --clean, a positive control:
the same rows before the injected noise (e.g. a `dataset=cmd` run dir that exported none), which
a judge and metrics that can see data quality should prefer. Writes compare.{md,csv,png,json} in
--out and prints compare.md; time per stage is in compare.json.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

parser = argparse.ArgumentParser()
parser.add_argument("--winner", required=True, help="the search's run dir (its export is the arm)")
parser.add_argument("--all-process", default="cleaning>optimization>generation>selection")
parser.add_argument("--clean", default=None, help="the rows before the noise: a run dir, export dir or JSONL")
parser.add_argument("--questions", type=int, default=100)
parser.add_argument("--out", default=str(ROOT / "outputs" / "judge" / time.strftime("%Y-%m-%d_%H-%M-%S")))
args, overrides = parser.parse_known_args()

arms = [f"winner={args.winner}", "none", f"all_process={args.all_process}"]
if args.clean:
    arms.append(f"clean={args.clean}")
cmd = [sys.executable, "launch.py", "task=compare", "finetune=smollm2_lora", "dataset=cmd_noisy",
       f"compare.questions={args.questions}", "compare.arms=[" + ",".join(f"'{a}'" for a in arms) + "]",
       *overrides, f"hydra.run.dir={args.out}"]
print(" ".join(cmd), flush=True)
subprocess.run(cmd, cwd=ROOT, check=True)
print((Path(args.out) / "compare.md").read_text())
