"""The final model of an arm: the ``finetune`` config's base trained on the arm's rows (in this
process, or as a DeepSpeed job when the config has a ``deepspeed`` section), LoRA merged, saved
whole. Its folder is named by what made it (rows, fine-tune config, seed), so a rerun or a
resumed compare reuses it, and the LLM cache keys its answers by that folder."""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from autodp.data.io import Row, fingerprint, write_rows
from autodp.evaluate import ds_train
from autodp.evaluate.finetune import build_trainer, training_args
from autodp.evaluate.lm import load_base
from autodp.evaluate.scoring import save_model
from autodp.evaluate.schedule import matched_budget
from autodp.resources import cache_lock, cpu_threads

log = logging.getLogger(__name__)


def model_dir(root: Path, rows: list[Row], ft: dict[str, Any], seed: int) -> Path:
    ident = {"rows": fingerprint(rows), "finetune": ft, "seed": seed}
    return root / hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def final_model(root: Path, rows: list[Row], ft: dict[str, Any], seed: int, pool: list[Row],
                reference_rows: int) -> tuple[Path, bool]:
    """(the model's folder, whether it was trained now). ``pool`` pre-warms a scratch base;
    ``reference_rows`` (the unprocessed training set's) sets the steps under ``budget: steps``."""
    ft = matched_budget(ft, reference_rows)
    folder = model_dir(root, rows, ft, seed)
    with cache_lock(folder):  # two compares of the same arm train it once
        if (folder / "config.json").exists():
            return folder, False
        _train(folder, rows, ft, seed, pool)
    return folder, True


def _trained(rows: list[Row], ft: dict[str, Any], seed: int, pool: list[Row], work: Path) -> tuple[Any, Any, int]:
    """(model, tokenizer, optimizer steps), trained inside ``work``."""
    if ft.get("deepspeed"):  # a torchrun job on every GPU of this one (autodp/evaluate/ds_train.py)
        write_rows(work / "train.jsonl", rows)
        saved = ds_train.launch(work / "train.jsonl", ft, work, seed)
        model, tok = ds_train.load_trained(saved, ft)
        return model.cpu(), tok, json.loads((saved / ds_train.METRICS).read_text())["train_steps"]
    torch.set_num_threads(cpu_threads(ft.get("threads")))
    model, tok = load_base(ft, pool)
    trainer = build_trainer(model, tok, rows, ft, training_args(ft, str(work / "trainer"), seed, progress=True))
    steps = trainer.train().global_step
    return trainer.model, tok, steps


def _train(folder: Path, rows: list[Row], ft: dict[str, Any], seed: int, pool: list[Row]) -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.") as work:
        model, tok, steps = _trained(rows, ft, seed, pool, Path(work))
        save_model(model, tok, Path(work) / "final")
        (Path(work) / "final").rename(folder)  # atomic: a killed compare leaves no half-saved model to reuse
    log.info("final model %s: %d rows, %d steps, %.1f s", folder.name, len(rows), steps, time.perf_counter() - t0)
