"""What F's classifier sees of a row: question and answer embeddings plus a few numeric features."""
from __future__ import annotations

import numpy as np

from autodp.accel.embed import Encoder, embed_rows, prompt_text
from autodp.data.io import Row

# Rule-clean rows all end properly and have few symbols, so only these vary among the rows the
# classifier sees; the cosine is what exposes an answer to another question.
NUMERIC = ("log_answer_chars", "log_question_chars", "qa_cosine")


def numeric_features(rows: list[Row], q: np.ndarray, a: np.ndarray) -> np.ndarray:
    """NUMERIC per row, from the rows and their question (``q``) and answer (``a``) embeddings."""
    lengths = np.log1p([[len(r["output"]), len(prompt_text(r))] for r in rows]).reshape(len(rows), 2)
    return np.hstack([lengths, np.einsum("ij,ij->i", q, a)[:, None]])


def featurise(rows: list[Row], encoder: Encoder, cache: bool = True) -> np.ndarray:
    """[question embedding, answer embedding, NUMERIC] per row."""
    q = embed_rows(rows, encoder, "prompt", cache)
    a = embed_rows(rows, encoder, "output", cache)
    return np.hstack([q, a, numeric_features(rows, q, a)]).astype(np.float64)
