"""The paper's comparison of search methods (sections 4.1.2 and 4.4, Tables 3, 4 and 6) on this
machine: every method on the same evaluation budget, several seeds, on a noisy and a clean set.

Usage: python benchmarks/methods.py [--methods autodp,random,greedy,mcts,all_process,no_process]
                                    [--datasets cmd_noisy,cmd] [--seeds 0,1,2] [--out DIR]
                                    [hydra overrides...]

One Hydra multirun (`python launch.py -m search=... dataset=... seed=...`) in --out; its callback
writes methods.{md,csv,png} there (autodp/tracking/methods.py): per dataset and method the picks,
their validation s ± SE, their held-out test score against no processing ± SE (the search's
confirmation), the evaluations used and the agent and wall time. The seed is the run's `seed`:
the fine-tunes' seeds, the agent's sampling, random search's draws and MCTS's choices.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autodp.tracking.methods import write_methods  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--methods", default="autodp,random,greedy,mcts,all_process,no_process")
parser.add_argument("--datasets", default="cmd_noisy,cmd")
parser.add_argument("--seeds", default="0,1,2")
parser.add_argument("--out", default=str(ROOT / "outputs" / "methods" / time.strftime("%Y-%m-%d_%H-%M-%S")))
args, overrides = parser.parse_known_args()

# Hydra runs the product with the first override outermost: seed first, so a sweep cut short
# still holds every method for the seeds it finished.
cmd = [sys.executable, "launch.py", "-m", f"seed={args.seeds}", f"dataset={args.datasets}", f"search={args.methods}",
       *overrides, f"hydra.sweep.dir={args.out}"]
print(" ".join(cmd), flush=True)
subprocess.run(cmd, cwd=ROOT, check=True)
paths = write_methods(args.out)  # the callback wrote it too; this also covers a sweep of one method
print(paths[0].read_text())
print(*paths, sep="\n")
