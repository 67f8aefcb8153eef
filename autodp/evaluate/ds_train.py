"""FT(W_pre, f(D)) with DeepSpeed on every GPU of the evaluation job, as its own job:

    python -m torch.distributed.run --standalone --nproc_per_node=<gpus> \\
        -m autodp.evaluate.ds_train <processed.jsonl> <finetune.json> <out_dir> [--seed N]

The evaluator (``finetune_and_score``) and task=compare's final models (``launch``) run it
whenever the finetune config has a ``deepspeed`` section, then read what it saved in out_dir: the
model and tokenizer, or the LoRA adapter. A child process also gives every GPU's memory back before scoring.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from autodp.data.io import load_rows, load_spec
from autodp.evaluate.finetune import build_trainer, training_args
from autodp.evaluate.lm import load_base
from autodp.evaluate.request import EvalRequest
from autodp.evaluate.scoring import score
from autodp.resources import cache_dir

METRICS = "train_metrics.json"


def launch_command(processed: Path, finetune_json: Path, out_dir: Path, seed: int,
                   gpus: int | None = None) -> list[str]:
    """torchrun with one process per visible GPU (one on a CPU-only machine)."""
    n = torch.cuda.device_count() if gpus is None else gpus
    # --standalone: a free rendezvous port per job, so jobs sharing a node do not collide.
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={max(n, 1)}",
            "-m", "autodp.evaluate.ds_train", str(processed), str(finetune_json), str(out_dir), "--seed", str(seed)]


def run(processed: Path, ft: dict[str, Any], out_dir: Path, seed: int) -> None:
    """One rank of the job: train, then save the model (or adapter), tokenizer and train metrics."""
    if ft["model"]["kind"] != "pretrained":
        raise ValueError("the DeepSpeed fine-tune loads a pretrained model (finetune.model.kind=pretrained)")
    args = training_args(ft, str(out_dir), seed)
    model, tok = load_base(ft, [])
    trainer = build_trainer(model, tok, load_rows(processed), ft, args)
    out = trainer.train()
    trainer.save_model(str(out_dir))  # every rank: under ZeRO-3 the weights are gathered collectively
    if trainer.is_world_process_zero():
        tok.save_pretrained(out_dir)
        engine = trainer.model_wrapped
        (out_dir / METRICS).write_text(json.dumps({
            "train_loss": float(out.training_loss), "train_steps": int(out.global_step),
            "train_rows": len(trainer.train_dataset),  # packed rows when packing
            "engine": type(engine).__name__, "zero_stage": engine.zero_optimization_stage(),
            "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}))


def load_trained(out_dir: Path, ft: dict[str, Any]) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """What ``run`` saved, on the first GPU if there is one; an adapter is loaded onto its base."""
    auto = AutoPeftModelForCausalLM if (out_dir / "adapter_config.json").exists() else AutoModelForCausalLM
    model = auto.from_pretrained(out_dir, dtype=getattr(torch, ft["model"].get("dtype", "float32")),
                                 attn_implementation=ft.get("attn_implementation"))
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), AutoTokenizer.from_pretrained(out_dir)


def launch(rows: Path, ft: dict[str, Any], work_dir: Path, seed: int) -> Path:
    """Runs the job on ``rows`` (JSON lines) inside ``work_dir``; returns the folder it saved."""
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR")
           or str(cache_dir("torch_extensions"))}  # DeepSpeed compiles its ops once, into the project cache
    cfg, out_dir = work_dir / "finetune.json", work_dir / "model"
    cfg.write_text(json.dumps(ft))
    subprocess.run(launch_command(rows, cfg, out_dir, seed), env=env, check=True)
    return out_dir


def finetune_and_score(req: EvalRequest, processed: Path, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """The evaluator's DeepSpeed path: (metrics, seconds per stage), as its in-process path."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=req.out_dir, prefix="ds_train.") as tmp:
        out_dir = launch(processed, req.finetune, Path(tmp), seed)
        t1 = time.perf_counter()
        model, tok = load_trained(out_dir, req.finetune)
        job = json.loads((out_dir / METRICS).read_text())
        t2 = time.perf_counter()
        metrics = {k: job[k] for k in ("train_loss", "train_steps", "zero_stage")}
        metrics.update(score(model, tok, load_spec(req.val), req.finetune, req.eval, seed))
    return metrics, {"finetune": t1 - t0, "load_model": t2 - t1, "score": time.perf_counter() - t2}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("processed", type=Path, help="the processed dataset, JSON lines")
    p.add_argument("finetune", type=Path, help="the finetune config group as JSON")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    run(a.processed, json.loads(a.finetune.read_text()), a.out_dir, a.seed)


if __name__ == "__main__":
    main()
