"""Fine-tune FT(W_pre, f(D)) with the HF Trainer and score Eval(., D_val) (paper eq. 2).

Rows become ``prompt + answer + eos`` with the prompt masked out of the loss, so the model is
trained and scored on answers only: what data processing changes is the answers it learns from.
"""
from __future__ import annotations

import math
import tempfile
from functools import partial
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from torch.utils.data import SequentialSampler
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments

from autodp.data.io import Row
from autodp.evaluate.packing import collate_packed, pack, pad_right
from autodp.evaluate.schedule import ORDERS, grad_accum, row_hash_order


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
    out = pad_right(batch, {"input_ids": pad_id, "labels": -100})
    lengths = torch.tensor([len(b["input_ids"]) for b in batch])
    out["attention_mask"] = (torch.arange(out["input_ids"].shape[1]) < lengths[:, None]).long()
    return out


def training_args(cfg: dict[str, Any], output_dir: str, seed: int, progress: bool = False) -> TrainingArguments:
    """TrainingArguments from the ``finetune`` config; with ``cfg["deepspeed"]`` the HF Trainer runs
    DeepSpeed. Under ZeRO-3, build these before loading the model so that it loads partitioned."""
    return TrainingArguments(
        output_dir=output_dir, seed=seed, data_seed=seed,
        per_device_train_batch_size=cfg["batch_size"], gradient_accumulation_steps=grad_accum(cfg),
        num_train_epochs=cfg.get("epochs", 1), max_steps=cfg.get("max_steps", -1),
        learning_rate=cfg["lr"], lr_scheduler_type=cfg.get("scheduler", "linear"),
        warmup_steps=cfg.get("warmup_steps", 0), weight_decay=cfg.get("weight_decay", 0.0),
        optim=cfg.get("optim", "adamw_torch"), bf16=cfg.get("bf16", False),
        deepspeed=cfg.get("deepspeed"),
        save_strategy="no", report_to=[], logging_steps=cfg.get("logging_steps", 10**9), disable_tqdm=not progress,
        dataloader_num_workers=0, remove_unused_columns=False, use_cpu=not torch.cuda.is_available())


class _InOrder(Trainer):
    """Batches in the dataset's own order (``order: row_hash`` has already ordered it)."""

    def _get_train_sampler(self, *args: Any, **kwargs: Any) -> SequentialSampler:
        return SequentialSampler(self.train_dataset)


def build_trainer(model: PreTrainedModel, tok: PreTrainedTokenizerBase, rows: list[Row], cfg: dict[str, Any],
                  args: TrainingArguments, answer_only: bool = True) -> Trainer:
    """The Trainer for FT(model, rows): LoRA adapters when ``cfg["lora"]``, packed rows when ``cfg["packing"]``,
    rows in ``cfg["order"]`` (``shuffle``, the default: the Trainer's seeded shuffle; ``row_hash``)."""
    order = cfg.get("order", "shuffle")
    if order not in ORDERS:
        raise ValueError(f"finetune.order must be one of {ORDERS}, not {order!r}")
    if order == "row_hash":
        rows = row_hash_order(rows, args.seed)
    data = encode(rows, tok, cfg["template"], cfg["max_length"], cfg["max_prompt_tokens"], answer_only)
    if cfg.get("lora"):
        lora = cfg["lora"]
        model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                                 target_modules=lora["target_modules"], task_type="CAUSAL_LM"))
    if cfg.get("packing"):
        data = pack(data, cfg["max_length"])
        collator = partial(collate_packed, pad_id=tok.pad_token_id,
                           attn_implementation=model.config._attn_implementation)
    else:
        collator = partial(collate, pad_id=tok.pad_token_id)
    trainer = _InOrder if order == "row_hash" else Trainer
    return trainer(model=model, args=args, train_dataset=data, data_collator=collator)


def train(model: PreTrainedModel, tok: PreTrainedTokenizerBase, rows: list[Row], cfg: dict[str, Any],
          seed: int, answer_only: bool = True, progress: bool = False) -> dict[str, float]:
    """Train in place. ``cfg`` is the ``finetune`` config group (or its ``prewarm`` section)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(model, tok, rows, cfg, training_args(cfg, tmp, seed, progress), answer_only)
        out = trainer.train()
    return {"train_loss": float(out.training_loss), "train_steps": int(out.global_step)}


@torch.no_grad()
def row_nll(model: PreTrainedModel, tok: PreTrainedTokenizerBase, rows: list[Row], cfg: dict[str, Any],
            batch_size: int = 16) -> list[tuple[float, int, int]]:
    """Per row: (NLL of the reference answer summed over its tokens, answer tokens, answer characters)."""
    model.eval()
    data = encode(rows, tok, cfg["template"], cfg["max_length"], cfg["max_prompt_tokens"])
    out = []
    for i in range(0, len(data), batch_size):
        batch = collate(data[i:i + batch_size], tok.pad_token_id)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2).float(), labels,
                                                ignore_index=-100, reduction="none").sum(dim=1)
        for b in range(labels.shape[0]):
            kept = labels[b][labels[b] != -100]
            chars = len(tok.decode(kept.tolist(), skip_special_tokens=True)) + int((kept == tok.eos_token_id).sum())
            out.append((float(nll[b]), int(kept.numel()), chars))
    return out


def answer_nll(model: PreTrainedModel, tok: PreTrainedTokenizerBase, rows: list[Row], cfg: dict[str, Any],
               batch_size: int = 16, per_row: bool = False) -> dict[str, Any]:
    """Mean negative log-likelihood of the reference answers, per token and per character; with
    ``per_row``, also each row's NLL per character (``rows_nll_per_char``), for paired row tests.

    Per character is the score: it is comparable across tokenizers, per token is not.
    """
    scored = row_nll(model, tok, rows, cfg, batch_size)
    total, tokens, chars = (sum(x[i] for x in scored) for i in range(3))
    out: dict[str, Any] = {"nll_per_token": total / tokens, "nll_per_char": total / max(chars, 1),
                           "ppl_token": math.exp(min(total / tokens, 50.0)), "val_rows": len(rows)}
    if per_row:
        out["rows_nll_per_char"] = [n / max(c, 1) for n, _, c in scored]
    return out
