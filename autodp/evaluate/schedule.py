"""How long and in which order a fine-tune trains: the optimizer steps a budget allows and the row
order, for the in-process and the DeepSpeed fine-tune alike. Plain Python: config checks read the
legal names here without loading torch."""
from __future__ import annotations

import hashlib
import math
import os
from typing import Any

from autodp.data.io import Row


def grad_accum(cfg: dict[str, Any]) -> int:
    """Micro-batches per optimizer step: ``global_batch_size`` over this job's ranks when set."""
    if "global_batch_size" not in cfg:
        return cfg.get("grad_accum", 1)
    per_step = cfg["batch_size"] * int(os.environ.get("WORLD_SIZE", 1))
    if cfg["global_batch_size"] % per_step:
        raise ValueError(f"global_batch_size {cfg['global_batch_size']} is not a multiple of batch_size x ranks "
                         f"= {per_step}")
    return cfg["global_batch_size"] // per_step


BUDGETS = ("epochs", "steps")


def matched_budget(cfg: dict[str, Any], reference_rows: int) -> dict[str, Any]:
    """The ``finetune`` config with its training compute fixed (``budget: steps``): as many optimizer
    steps as ``epochs`` over ``reference_rows`` (the unprocessed input) take, whatever a strategy
    kept, so removing rows does not also mean training less. ``budget: epochs`` leaves it as is, and
    so does an explicit ``max_steps``, which fixes the compute already."""
    budget = cfg.get("budget", "epochs")
    if budget not in BUDGETS:
        raise ValueError(f"finetune.budget must be one of {BUDGETS}, not {budget!r}")
    if budget == "epochs" or cfg.get("max_steps", -1) > 0:
        return cfg
    per_step = cfg["batch_size"] * grad_accum(cfg) * int(os.environ.get("WORLD_SIZE", 1))
    return {**cfg, "max_steps": max(1, math.ceil(reference_rows * cfg.get("epochs", 1) / per_step))}


ORDERS = ("shuffle", "row_hash")


def row_hash_order(rows: list[Row], seed: int) -> list[Row]:
    """Rows sorted by a hash of (seed, row id): two strategies' data share the order of the rows
    they share. A shuffle of positions reorders every row as soon as one is removed, so 'the same
    seed' would pair nothing but the initialisation."""
    key = lambda r: hashlib.sha256(f"{seed}/{r.get('id') or r['instruction'] + r['output']}".encode()).digest()
    return sorted(rows, key=key)
