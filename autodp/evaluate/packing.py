"""Sequence packing: several samples per row of ``max_length`` tokens, with no attention or loss
across sample boundaries.

Position ids restart at 0 for every sample, and every attention implementation gets a document
mask, because restarting position ids alone isolates nothing: each token would still attend to
the samples before it in the row. Per implementation:
- sdpa, eager: an explicit block-diagonal causal 4D mask, built here.
- flex_attention: transformers builds a BlockMask from the restarting position ids, which it does
  only with no attention_mask and no KV cache (hence ``use_cache=False`` in every packed batch).
- flash_attention_2: one flattened row and the sample boundaries (cu_seqlens): the varlen kernel.
tests/test_finetune_ds.py checks that packed logits and loss equal those of each sample alone.
"""
from __future__ import annotations

import torch

Example = dict[str, list[int]]


def pack(samples: list[Example], max_length: int) -> list[Example]:
    """First-fit decreasing into rows of at most ``max_length`` tokens; samples are never split
    (``finetune.encode`` already cut each to ``max_length``)."""
    rows: list[list[Example]] = []
    room: list[int] = []
    for s in sorted(samples, key=lambda s: -len(s["input_ids"])):
        n = len(s["input_ids"])
        i = next((i for i, free in enumerate(room) if free >= n), len(rows))
        if i == len(rows):
            rows.append([])
            room.append(max_length)
        rows[i].append(s)
        room[i] -= n
    return [{"input_ids": [t for s in row for t in s["input_ids"]],
             # A sample's first label is never predicted when it is alone; in a row it would be
             # predicted from the previous sample's last token.
             "labels": [t for s in row for t in [-100] + s["labels"][1:]],
             "position_ids": [p for s in row for p in range(len(s["input_ids"]))]} for row in rows]


def pad_right(rows: list[Example], fill: dict[str, int]) -> dict[str, torch.Tensor]:
    """The ``fill`` fields of ``rows`` as (rows, longest) tensors, padded on the right with each
    field's fill value."""
    n = max(len(r["input_ids"]) for r in rows)
    out = {k: torch.full((len(rows), n), v) for k, v in fill.items()}
    for i, r in enumerate(rows):
        for k in fill:
            out[k][i, :len(r[k])] = torch.tensor(r[k])
    return out


def collate_packed(rows: list[Example], pad_id: int, attn_implementation: str) -> dict[str, object]:
    """A batch of packed rows for ``model(**batch)`` under the given attention implementation."""
    if attn_implementation == "flash_attention_2":
        pos = torch.tensor([p for r in rows for p in r["position_ids"]])
        starts = (pos == 0).nonzero().flatten().tolist() + [len(pos)]
        cu = torch.tensor(starts, dtype=torch.int32)
        longest = int(cu.diff().max())
        return {"input_ids": torch.tensor([[t for r in rows for t in r["input_ids"]]]),
                "labels": torch.tensor([[t for r in rows for t in r["labels"]]]), "position_ids": pos[None],
                "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest,
                "use_cache": False}
    batch: dict[str, object] = pad_right(rows, {"input_ids": pad_id, "labels": -100, "position_ids": 0})
    # The padding after the last sample is one more document (positions from 0): no query row is
    # then fully masked, which would give NaN in sdpa; its labels are -100.
    pos = batch["position_ids"]
    n = pos.shape[1]
    for i, r in enumerate(rows):
        pos[i, len(r["input_ids"]):] = torch.arange(n - len(r["input_ids"]))
    batch["use_cache"] = False
    if attn_implementation == "flex_attention":
        return batch
    if attn_implementation not in ("sdpa", "eager"):
        raise ValueError(f"no packed path for attn_implementation={attn_implementation!r}")
    doc = (pos == 0).cumsum(-1)
    allowed = (doc[:, :, None] == doc[:, None, :]) & torch.ones(n, n, dtype=torch.bool).tril()
    # sdpa takes a boolean mask (True = attend); eager adds the mask to the scores.
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    batch["attention_mask"] = (allowed if attn_implementation == "sdpa" else additive)[:, None]
    return batch
