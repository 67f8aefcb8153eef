"""Throughput of every operator of the default teams on the CPU default.

Usage: python benchmarks/operators.py [--rows N] [hydra overrides, e.g. llm.max_rows=16]
Each operator runs on the same N shipped CMD rows (8 answers and 8 questions blanked, so the
fills have work). Cleaning operators process every row. LLM operators process llm.max_rows rows
(generation: llm.max_pairs pairs) with the LLM answer cache off, so every call generates. LESS
runs twice: cold (its warm-up on the pool, then every row) and warm (a later strategy whose rows
differ in 8 rows: only those are scored). rows/s = rows (or pairs) processed / seconds.
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: as in a search
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import autodp.ops  # noqa: E402,F401 - registers the operators
from autodp.accel.screening import compose  # noqa: E402
from autodp.data.io import load_rows  # noqa: E402
from autodp.data.specs import data_specs  # noqa: E402
from autodp.ops.base import build_op, run_op  # noqa: E402
from autodp.ops.llm_op import LLMOperator  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=400)
args, overrides = parser.parse_known_args()
cfg = compose(["llm.client.cache=false", *overrides])
torch.set_num_threads(cfg.finetune.threads)
rows = load_rows(ROOT / "autodp/data/samples/cmd/train.jsonl", limit=args.rows)
for i in range(8):
    rows[10 + 20 * i] = {**rows[10 + 20 * i], "output": ""}
    rows[20 + 20 * i] = {**rows[20 + 20 * i], "instruction": ""}
specs = data_specs(cfg, ROOT / ".cache" / "bench-splits")
context = {"finetune": OmegaConf.to_container(cfg.finetune, resolve=True), "val": specs.target, "pool": specs.pool}
teams = OmegaConf.to_container(cfg.teams, resolve=True)


def line(team: str, name: str, rep, processed: int, unit: str = "rows") -> None:
    rate = processed / rep.seconds if rep.seconds else float("inf")
    per = f"{rep.seconds / processed:7.2f} s/{unit[:-1]}" if processed else ""
    print(f"| {team} | {name} | {rep.rows_in} -> {rep.rows_out} | {processed} {unit} | {rep.seconds:8.2f} s | "
          f"{rate:9.2f} {unit}/s | {per} |", flush=True)


print(f"\n{len(rows)} rows, llm={cfg.llm.client.model} max_rows={cfg.llm.max_rows} max_pairs={cfg.llm.max_pairs}, "
      f"{torch.get_num_threads()} torch threads\n")
print("| team | operator | rows in -> out | processed | seconds | throughput | per unit |")
print("|---|---|---|---|---|---|---|")
for team in ("cleaning", "optimization", "generation", "selection"):
    for spec in teams[team]:
        op = build_op(spec, context)
        if isinstance(op, LLMOperator):
            op.client  # load the model before timing: a search loads it once
        out, rep = run_op(op, rows)
        if op.name == "less_select":
            line(team, "less_select (cold: warm-up + all rows)", rep, len(rows))
            changed = [{**r, "output": r["output"] + "。"} if i < 8 else r for i, r in enumerate(rows)]
            _, rep = run_op(op, changed)
            line(team, "less_select (warm: 8 new rows)", rep, 8)
        elif isinstance(op, LLMOperator):
            unit = "pairs" if op.name == "generate_qa_from_shots" else "rows"
            line(team, f"{op.name} ({op.last_stats.get('rejected') or 'none'} rejected)", rep,
                 op.last_stats["processed"], unit)
        else:
            line(team, op.name, rep, len(rows))
