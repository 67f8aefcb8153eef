"""The final model of an arm: the ``finetune`` config's base trained on the arm's rows, LoRA
merged, saved whole. Its folder is named by what made it (rows, fine-tune config, seed), so a
rerun or a resumed compare reuses it, and the LLM cache keys its answers by that folder."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from autodp.data.io import Row, fingerprint
from autodp.evaluate.finetune import build_trainer, training_args
from autodp.evaluate.lm import load_base
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


def _train(folder: Path, rows: list[Row], ft: dict[str, Any], seed: int, pool: list[Row]) -> None:
    t0 = time.perf_counter()
    torch.set_num_threads(cpu_threads(ft.get("threads")))
    model, tok = load_base(ft, pool)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(model, tok, rows, ft, training_args(ft, scratch, seed, progress=True))
        out = trainer.train()
    trained = trainer.model
    if isinstance(trained, PeftModel):
        trained = trained.merge_and_unload()  # one plain model for generation: no adapter at load time
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    trained.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:  # atomic: a killed compare leaves no half-saved model to reuse
        tmp.rename(folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("final model %s: %d rows, %d steps, loss %.3f, %.1f s", folder.name, len(rows), out.global_step,
             out.training_loss, time.perf_counter() - t0)
