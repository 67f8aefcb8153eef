"""Time the embedded default search (`make run`) end to end and per stage.

Usage: python benchmarks/run_default.py [hydra overrides...]
Prints wall time, the per-stage timings the run recorded, and how many rounds the agent ran.
Run it twice to see cold (pre-warm and model conversion) and warm (cached) figures.
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

with tempfile.TemporaryDirectory() as tmp:
    run_dir = Path(tmp) / "run"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "launch.py", *sys.argv[1:], f"hydra.run.dir={run_dir}"], cwd=ROOT, check=True)
    wall = time.perf_counter() - t0
    res = json.loads((run_dir / "results.json").read_text())
print(f"\nwall time: {wall:.0f} s ({wall / 60:.1f} min)")
print(f"rounds: {len({r['round'] for r in res['table']}) - 1}, evaluations: {len(res['table'])}, "
      f"agent rounds {res['agent_rounds']}, re-prompts {res['reprompts']}")
print(f"best: {res['best']}; stop: {res['stop_reason']}")
for stage, seconds in sorted(res["timings"].items()):
    print(f"  {stage:20s} {seconds:7.1f} s")
