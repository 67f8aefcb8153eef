"""Fine-tune FT(W_pre, f(D)) with the HF Trainer and score Eval(., D_val) (paper eq. 2).

Rows become ``prompt + answer + eos`` with the prompt masked out of the loss, so the model is
trained and scored on answers only: what data processing changes is the answers it learns from.
"""
from __future__ import annotations

import math
import tempfile
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments

from autodp.data.io import Row


def encode(rows: list[Row], tok: PreTrainedTokenizerBase, template: str, max_length: int,
           max_prompt_tokens: int, answer_only: bool = True) -> list[dict[str, list[int]]]:
    out = []
    for r in rows:
        prompt = tok(template.format(instruction=r["instruction"], input=r["input"]),
                     add_special_tokens=False)["input_ids"][:max_prompt_tokens]
        answer = tok(r["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (prompt + answer)[:max_length]
        labels = ([-100] * len(prompt) if answer_only else prompt) + answer
        out.append({"input_ids": ids, "labels": labels[:max_length]})
    return out


def collate(batch: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    n = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), n), pad_id)
    labels = torch.full((len(batch), n), -100)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, b in enumerate(batch):
        k = len(b["input_ids"])
        ids[i, :k], labels[i, :k], mask[i, :k] = torch.tensor(b["input_ids"]), torch.tensor(b["labels"]), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def train(model: PreTrainedModel, tok: PreTrainedTokenizerBase, rows: list[Row], cfg: dict[str, Any],
          seed: int, answer_only: bool = True, progress: bool = False) -> dict[str, float]:
    """Train in place. ``cfg`` is the ``finetune`` config group (or its ``prewarm`` section)."""
    data = encode(rows, tok, cfg["template"], cfg["max_length"], cfg["max_prompt_tokens"], answer_only)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, seed=seed, data_seed=seed,
            per_device_train_batch_size=cfg["batch_size"],
            gradient_accumulation_steps=cfg.get("grad_accum", 1),
            num_train_epochs=cfg.get("epochs", 1), max_steps=cfg.get("max_steps", -1),
            learning_rate=cfg["lr"], lr_scheduler_type=cfg.get("scheduler", "linear"),
            warmup_steps=cfg.get("warmup_steps", 0), weight_decay=cfg.get("weight_decay", 0.0),
            optim=cfg.get("optim", "adamw_torch"), bf16=cfg.get("bf16", False),
            deepspeed=cfg.get("deepspeed"),
            save_strategy="no", report_to=[], logging_steps=10**9, disable_tqdm=not progress,
            dataloader_num_workers=0, remove_unused_columns=False, use_cpu=not torch.cuda.is_available())
        trainer = Trainer(model=model, args=args, train_dataset=data,
                          data_collator=lambda b: collate(b, tok.pad_token_id))
        out = trainer.train()
    return {"train_loss": float(out.training_loss), "train_steps": int(out.global_step)}


@torch.no_grad()
def answer_nll(model: PreTrainedModel, tok: PreTrainedTokenizerBase, rows: list[Row], cfg: dict[str, Any],
               batch_size: int = 16) -> dict[str, float]:
    """Mean negative log-likelihood of the reference answers, per token and per character.

    Per character is the score: it is comparable across tokenizers, per token is not.
    """
    model.eval()
    data = encode(rows, tok, cfg["template"], cfg["max_length"], cfg["max_prompt_tokens"])
    total, tokens, chars = 0.0, 0, 0
    for i in range(0, len(data), batch_size):
        batch = collate(data[i:i + batch_size], tok.pad_token_id)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2).float(), labels,
                                                ignore_index=-100, reduction="sum")
        total += float(nll)
        kept = labels[labels != -100]
        tokens += int(kept.numel())
        chars += len(tok.decode(kept.tolist(), skip_special_tokens=True)) + int((kept == tok.eos_token_id).sum())
    return {"nll_per_token": total / tokens, "nll_per_char": total / max(chars, 1),
            "ppl_token": math.exp(min(total / tokens, 50.0)), "val_rows": len(rows)}
