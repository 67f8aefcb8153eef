"""The Data Selection Team: LESS (Xia et al., ICML 2024), gradient-based selection for a target set.

A LoRA adapter on the fine-tune model is warmed up on a small random part of the raw training
pool. At the end of every warm-up epoch (a checkpoint), each row's LoRA gradient, preconditioned
with the Adam moments (the direction Adam would step), and the plain gradients of validation
examples are randomly projected and L2-normalised. A row's score is the sum over checkpoints,
weighted by the epoch's mean learning rate, of its mean cosine to the validation features; the
top rows are kept.

LESS warms up on the data it selects from. In a search that data is f(D), a different set for
every strategy, while what LESS needs from the warm-up is an adapter that has seen the domain.
Warming up on the raw pool D instead makes a row's score depend on the row alone, so a strategy
scores only the rows no earlier strategy scored (a row is known by its text): after the first
strategy that selects, the next ones cost seconds, not minutes.
"""
from __future__ import annotations

import logging
import hashlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import PreTrainedModel

from autodp.data.io import TEXT_FIELDS, Row, load_spec
from autodp.evaluate.finetune import collate, encode
from autodp.evaluate.schedule import grad_accum
from autodp.evaluate.lm import load_base
from autodp.ops.base import Operator, TeamNotAvailable, register
from autodp.strategy import Team

log = logging.getLogger(__name__)
Example = dict[str, list[int]]
Moments = tuple[torch.Tensor, torch.Tensor]
# Adam's defaults, which LESS assumes when it preconditions with the saved moments.
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class RademacherProjector:
    """x -> x R / sqrt(dim), R an (n, dim) matrix of random signs drawn from ``seed``.

    R is never held whole (for a 1.5B model's LoRA it has ~3e11 entries): it is regenerated chunk
    by chunk, in the same order from the same seed on every call, so every block of vectors is
    projected by the same R.
    """

    def __init__(self, dim: int, seed: int, chunk_entries: int = 2**24):
        self.dim, self.seed = dim, seed
        self.chunk = max(1, chunk_entries // dim)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        out = torch.zeros(x.shape[0], self.dim, device=x.device)
        for start in range(0, x.shape[1], self.chunk):
            part = x[:, start:start + self.chunk]
            # Drawn as floats and mapped in place: 3x faster than int64 draws and a cast.
            signs = torch.randint(0, 2, (part.shape[1], self.dim), generator=gen, device=x.device,
                                  dtype=part.dtype).mul_(2).sub_(1)
            out += part @ signs
        return out / math.sqrt(self.dim)


class LoraGradients:
    """A LoRA adapter on a causal LM: its warm-up, and per-example gradients of its weights."""

    def __init__(self, model: PreTrainedModel, config: LoraConfig, pad_id: int, device: torch.device):
        self.model = get_peft_model(model, config).to(device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.pad_id, self.device = pad_id, device

    def _batch(self, data: list[Example]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in collate(data, self.pad_id).items()}

    def warmup(self, data: list[Example], epochs: int, lr: float, batch_size: int, accum: int,
               seed: int) -> Iterator[tuple[float, Moments]]:
        """AdamW with a linear decay to 0, as LESS's warm-up. After each epoch, yield its mean
        learning rate and the flattened Adam moments (m, v); until the next step the model
        holds that checkpoint's weights."""
        opt = torch.optim.AdamW(self.params, lr=lr, betas=(BETA1, BETA2), eps=EPS, weight_decay=0.0)
        total = math.ceil(len(data) / (batch_size * accum)) * epochs
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / total)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            self.model.train()
            lrs = []
            for step in _batches(torch.randperm(len(data), generator=gen).tolist(), batch_size * accum):
                for micro in _batches(step, batch_size):
                    loss = self.model(**self._batch([data[i] for i in micro])).loss
                    (loss * len(micro) / len(step)).backward()
                lrs.append(sched.get_last_lr()[0])
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            yield sum(lrs) / len(lrs), tuple(torch.cat([opt.state[p][k].reshape(-1) for p in self.params])
                                             for k in ("exp_avg", "exp_avg_sq"))

    def grads(self, data: list[Example], adam: Moments | None = None) -> torch.Tensor:
        """One row per example: its flattened gradient of the mean answer-token loss, or with
        ``adam`` the Adam update direction m' / sqrt(v' + eps) from the moments (m, v)."""
        self.model.eval()  # no dropout: a row's gradient must not depend on a random mask
        flat = []
        for ex in data:  # one at a time: 6x faster than vmap-batched backward on CPU (measured)
            grads = torch.autograd.grad(self.model(**self._batch([ex])).loss, self.params)
            flat.append(torch.cat([x.reshape(-1).float() for x in grads]))
        g = torch.stack(flat)
        if adam is None:
            return g
        m, v = adam
        return (BETA1 * m + (1 - BETA1) * g) / torch.sqrt(BETA2 * v + (1 - BETA2) * g**2 + EPS)


class Checkpoint:
    """One warm-up epoch: its mean learning rate, Adam moments, LoRA weights, target features."""

    def __init__(self, lr_weight: float, adam: Moments, weights: list[torch.Tensor], val: torch.Tensor):
        self.lr_weight, self.adam, self.weights, self.val = lr_weight, adam, weights, val


class LessScorer:
    """The fixed part of LESS for one setting (warm-up on the pool, checkpoints, target features),
    and every row score computed so far, by row text."""

    def __init__(self, settings: dict[str, Any]):
        p, ft = settings, settings["finetune"]
        pool = load_spec(p["pool"])
        # Loaded before seeding: building a base for the first time draws random numbers, and
        # the adapter must not depend on whether the base was already cached.
        base, self.tok = load_base(ft, pool)
        # The LoRA init and dropout draw from torch's global generator: seed them without
        # changing the caller's.
        with torch.random.fork_rng():
            torch.manual_seed(p["seed"])
            self._build(p, ft, pool, base)

    def _build(self, p: dict[str, Any], ft: dict[str, Any], pool: list[Row], base: PreTrainedModel) -> None:
        self.seconds: Counter = Counter()
        self.lora = LoraGradients(base, LoraConfig(r=p["lora_r"], lora_alpha=p["lora_alpha"],
                                                   lora_dropout=p["lora_dropout"],
                                                   target_modules=list(p["target_modules"]), task_type="CAUSAL_LM"),
                                  self.tok.pad_token_id, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        self.ft, self.project = ft, RademacherProjector(p["proj_dim"], p["seed"])
        n_params = sum(x.numel() for x in self.lora.params)
        self.block = max(1, p["buffer_mb"] * 2**20 // (4 * n_params))
        rng = random.Random(p["seed"])
        n_warm = min(len(pool), max(p["min_warmup_rows"], round(p["warmup_fraction"] * len(pool))))
        warm = self.encode(rng.sample(pool, n_warm))
        val_rows = load_spec(p["val"])
        val = self.encode(rng.sample(val_rows, min(p["n_val"], len(val_rows))))
        self.checkpoints: list[Checkpoint] = []
        t0 = time.perf_counter()
        for lr_weight, adam in self.lora.warmup(warm, p["warmup_epochs"], p["lr"], ft["batch_size"],
                                                grad_accum(ft), p["seed"]):
            self.seconds["warmup"] += time.perf_counter() - t0
            weights = [x.detach().clone() for x in self.lora.params]
            self.checkpoints.append(Checkpoint(lr_weight, adam, weights, self.features(val, None, "val_grads")))
            t0 = time.perf_counter()
        self.known: dict[str, float] = {}
        log.info("less_select: warm-up on %d pool rows x %d epochs, %d target rows, %d LoRA params -> %d dims; "
                 "seconds: %s", n_warm, p["warmup_epochs"], len(val), n_params, p["proj_dim"],
                 ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))

    def encode(self, rows: list[Row]) -> list[Example]:
        ft = self.ft
        return encode(rows, self.tok, ft["template"], ft["max_length"], ft["max_prompt_tokens"])

    def features(self, data: list[Example], adam: Moments | None, stage: str) -> torch.Tensor:
        out = []
        for blk in _batches(data, self.block):
            t0 = time.perf_counter()
            g = self.lora.grads(blk, adam)
            t1 = time.perf_counter()
            out.append(self.project(g))
            self.seconds[stage] += t1 - t0
            self.seconds["projection"] += time.perf_counter() - t1
        return F.normalize(torch.cat(out), dim=1)

    def __call__(self, rows: list[Row]) -> torch.Tensor:
        keys = [row_key(r) for r in rows]
        todo = list({k: r for k, r in zip(keys, rows) if k not in self.known}.items())
        self.seconds.clear()
        if todo:
            data = self.encode([r for _, r in todo])
            scores = torch.zeros(len(todo), device=self.lora.device)
            for cp in self.checkpoints:
                with torch.no_grad():
                    for x, w in zip(self.lora.params, cp.weights):
                        x.copy_(w)
                scores += cp.lr_weight * (self.features(data, cp.adam, "train_grads") @ cp.val.T).mean(dim=1)
            self.known.update(zip((k for k, _ in todo), scores.tolist()))
        log.info("less_select: %d rows, %d scored now (the rest known: scored earlier or repeated); seconds: %s",
                 len(rows), len(todo), ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()) or "0")
        return torch.tensor([self.known[k] for k in keys])


def row_key(row: Row) -> str:
    return hashlib.sha256(json.dumps([row[f] for f in TEXT_FIELDS]).encode()).hexdigest()


@lru_cache(maxsize=1)  # one setting at a time: a GPU model's adapter is not kept beside another's
def _scorer(settings: str) -> LessScorer:
    return LessScorer(json.loads(settings))


@register("less_select")
class LessSelect(Operator):
    """Keep the ``keep_fraction`` of rows whose LoRA gradients best match the validation set's.

    ``finetune`` is the fine-tune config: its model, template, lengths, and batch size and
    accumulation for the warm-up. ``pool`` is the raw training data the warm-up samples
    ``warmup_fraction`` of (at least ``min_warmup_rows``) and a scratch base is pre-warmed on (the
    evaluator's, so its cached base is reused), ``val`` the target examples (in a search: the
    validation rows reserved by ``eval.target_rows``, which R(f) never scores on), ``n_val``
    random examples of which are used. All three come from the evaluation when not configured.
    Gradients are projected in blocks of up to ``buffer_mb`` (the random matrix is regenerated
    once per block: all rows at once on a tiny model, tens of rows for a 1.5B model's LoRA).
    Defaults are LESS's artifact values, except ``min_warmup_rows`` (so that a small pool still
    warms up on more than a handful of rows).
    """

    team = Team.SELECTION
    context_params = ("finetune", "val", "pool")
    row_scores = True

    def __init__(self, finetune: dict[str, Any], val: dict[str, Any], pool: dict[str, Any],
                 keep_fraction: float = 0.5, warmup_fraction: float = 0.05, min_warmup_rows: int = 64,
                 warmup_epochs: int = 4, lr: float = 2e-5, lora_r: int = 128, lora_alpha: int = 512,
                 lora_dropout: float = 0.1,
                 target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
                 proj_dim: int = 8192, n_val: int = 64, buffer_mb: int = 4096, seed: int = 0):
        if not 0.0 <= keep_fraction <= 1.0 or not 0.0 < warmup_fraction <= 1.0:
            raise ValueError(f"need 0 <= keep_fraction <= 1 and 0 < warmup_fraction <= 1, "
                             f"got {keep_fraction}, {warmup_fraction}")
        if not val or val.get("path") is None or val.get("limit") == 0:
            # Not a ValueError: the evaluator shows this message to the agent (it names no data).
            raise TeamNotAvailable("the Data Selection Team (LESS) needs target examples (eval.target_rows > 0)")
        self.finetune, self.val, self.pool = finetune, val, pool
        self.keep_fraction, self.warmup_fraction = keep_fraction, warmup_fraction
        self.min_warmup_rows, self.warmup_epochs, self.lr = min_warmup_rows, warmup_epochs, lr
        self.lora_r, self.lora_alpha, self.lora_dropout = lora_r, lora_alpha, lora_dropout
        self.target_modules = list(target_modules)
        self.proj_dim, self.n_val, self.buffer_mb, self.seed = proj_dim, n_val, buffer_mb, seed

    def __call__(self, rows: list[Row]) -> list[Row]:
        return self.choose(rows, self.scores)

    def choose(self, rows: list[Row], scores: Callable[[list[Row]], torch.Tensor]) -> list[Row]:
        """The ``keep_fraction`` of ``rows`` that ``scores`` ranks highest, in row order."""
        keep = round(self.keep_fraction * len(rows))
        if keep in (0, len(rows)):
            return rows[:keep]
        top = torch.argsort(scores(rows), descending=True, stable=True)[:keep]
        return [rows[i] for i in sorted(top.tolist())]

    def scorer(self) -> LessScorer:
        """The warm-up and target features of these settings (built once per process)."""
        settings = {k: v for k, v in self.params().items() if k != "keep_fraction"}
        return _scorer(json.dumps(settings, sort_keys=True, default=list))

    def scores(self, rows: list[Row]) -> torch.Tensor:
        """The LESS score of every row: higher is more like the validation set."""
        return self.scorer()(rows)
