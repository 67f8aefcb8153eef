"""Throughput of the evaluation fine-tune on GPU: the Qwen2.5-1.5B shape, built from a Qwen2
config with random weights (no weights reach the GPU machine), trained through the evaluator's
own DeepSpeed path (finetune.training_args + build_trainer on conf/finetune/qwen2.5-1.5b.yaml),
with ZeRO-2 and ZeRO-3, padded and packed.

Usage: python benchmarks/finetune_gpu.py [--steps 200] [--warmup 10] [--stages 2 3]
                                         [--packing false true] [--set finetune.KEY=VALUE ...]
       python benchmarks/finetune_gpu.py --cpu-smoke    # 2 steps of a tiny model on CPU (for tests)

Each cell is its own torchrun job on every visible GPU. Samples are the shipped CMD rows under
the Qwen chat template, one token per character (Qwen2.5's tokenizer spends about as many on
Chinese). Printed per cell: real (non-padding) tokens/s over the steps after --warmup, peak GPU
memory of rank 0, and MFU = 6 x params x tokens/s per GPU / 989e12 (H100 dense bf16).
A step is one optimizer step of finetune.global_batch_size rows: samples when padded, packed
rows of max_length tokens when packed; `--set finetune.global_batch_size=8` shortens steps.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from transformers import AutoModelForCausalLM, Qwen2Config, TrainerCallback  # noqa: E402

import autodp  # noqa: E402,F401 - registers the config resolvers
from autodp.data.io import load_rows  # noqa: E402
from autodp.evaluate.finetune import build_trainer, training_args  # noqa: E402
from autodp.evaluate.schedule import grad_accum  # noqa: E402
from autodp.evaluate.lm import char_tokenizer  # noqa: E402

H100_BF16_FLOPS = 989e12
ROWS = ROOT / "autodp" / "data" / "samples" / "cmd" / "train.jsonl"
QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=8000, max_position_embeddings=512, tie_word_embeddings=True)
# The GPU config on CPU: no bf16, tiny rows and batches.
CPU_SMOKE = ["finetune.model.dtype=float32", "finetune.bf16=false", "finetune.max_length=128",
             "finetune.max_prompt_tokens=64", "finetune.batch_size=2", "finetune.global_batch_size=4"]


class Meter(TrainerCallback):
    """Real tokens and wall time between the end of the warm-up step and the end of the last step.
    Tokens are counted where the model receives them, so nothing the dataloader prefetches counts."""

    def __init__(self, model: torch.nn.Module, pad_id: int, warmup: int):
        self.pad_id, self.warmup, self.tokens, self.start, self.end = pad_id, warmup, 0, None, None
        model.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs):
        self.tokens += int(kwargs["input_ids"].ne(self.pad_id).sum())

    def on_step_end(self, args, state, control, **kw):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if state.global_step == self.warmup:
            self.start = (time.perf_counter(), self.tokens)
        self.end = (time.perf_counter(), self.tokens)


def cell(stage: int, packing: bool, steps: int, warmup: int, overrides: list[str], smoke: bool) -> dict:
    """One torchrun rank: train ``steps`` optimizer steps; rank 0 returns the figures."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        # model.path is mandatory in the config; the model here is built from a config instead.
        cfg = compose("config", overrides=["finetune=qwen2.5-1.5b", f"finetune/deepspeed=zero{stage}",
                                           f"finetune.packing={packing}", "finetune.model.path=unused",
                                           f"+finetune.max_steps={steps}", "finetune.logging_steps=1000000",
                                           *(CPU_SMOKE if smoke else []), *overrides])
    ft = OmegaConf.to_container(cfg.finetune, resolve=True)
    rows = load_rows(ROWS)
    tok = char_tokenizer((r["instruction"] + r["input"] + r["output"] for r in rows), 8000)
    with tempfile.TemporaryDirectory() as tmp:
        args = training_args(ft, tmp, seed=0)  # first: under ZeRO-3 the model is then built partitioned
        model = AutoModelForCausalLM.from_config(
            Qwen2Config(**(TINY if smoke else QWEN25_15B), pad_token_id=tok.pad_token_id,
                        eos_token_id=tok.eos_token_id),
            dtype=getattr(torch, ft["model"]["dtype"]), attn_implementation=ft["attn_implementation"])
        params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
        meter = Meter(model, tok.pad_token_id, warmup)
        trainer = build_trainer(model, tok, rows, ft, args)
        trainer.add_callback(meter)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        world = int(os.environ.get("WORLD_SIZE", 1))
        tokens = torch.tensor(meter.end[1] - meter.start[1], device=args.device)
        if world > 1:
            torch.distributed.all_reduce(tokens)
        per_s = int(tokens) / (meter.end[0] - meter.start[0])
        return {"zero": stage, "packing": packing, "attn": ft["attn_implementation"], "gpus": world,
                "micro_batch": ft["batch_size"], "accum": grad_accum(ft), "max_length": ft["max_length"],
                "params": params, "steps_timed": steps - warmup, "tokens_per_s": per_s,
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
                "mfu": 6 * params * per_s / world / H100_BF16_FLOPS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="optimizer steps per cell")
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    p.add_argument("--stages", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    p.add_argument("--packing", nargs="+", default=["false", "true"], choices=["false", "true"])
    p.add_argument("--set", nargs="*", default=[], metavar="OVERRIDE",
                   help="Hydra overrides, e.g. finetune.batch_size=4")
    p.add_argument("--cpu-smoke", action="store_true", help="2 steps of a tiny model on CPU, to test this script")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell (JSON) in this torchrun rank
    a = p.parse_args()
    if a.cell:
        out = cell(**json.loads(a.cell))
        if int(os.environ.get("RANK", 0)) == 0:
            print("RESULT " + json.dumps(out), flush=True)
        return
    steps, warmup = (2, 1) if a.cpu_smoke else (a.steps, a.warmup)
    if not 0 < warmup < steps:
        p.error("need 0 < --warmup < --steps: the clock starts at the end of the warm-up steps")
    gpus = max(torch.cuda.device_count(), 1)
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR")
           or str(ROOT / ".cache" / "torch_extensions")}
    print("| ZeRO | packing | attn | GPUs | micro-batch x accum | max length | params | steps timed | "
          "real tokens/s | peak GiB | MFU |\n|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    failed = 0
    for stage in a.stages:
        for packing in a.packing:
            spec = {"stage": stage, "packing": packing == "true", "steps": steps, "warmup": warmup,
                    "overrides": a.set, "smoke": a.cpu_smoke}
            r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                f"--nproc_per_node={gpus}", __file__, "--cell", json.dumps(spec)],
                               env=env, capture_output=True, text=True)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
            if r.returncode or not lines:
                print(f"| {stage} | {packing} | failed (exit {r.returncode}): {r.stderr.strip()[-2000:]} |",
                      flush=True)
                failed += 1
                continue
            x = json.loads(lines[-1][len("RESULT "):])
            peak = "-" if x["peak_gib"] is None else f"{x['peak_gib']:.1f}"
            print(f"| {x['zero']} | {x['packing']} | {x['attn']} | {x['gpus']} | {x['micro_batch']} x {x['accum']} | "
                  f"{x['max_length']} | {x['params'] / 1e6:,.1f} M | {x['steps_timed']} | {x['tokens_per_s']:,.0f} | "
                  f"{peak} | {x['mfu']:.1%} |", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
