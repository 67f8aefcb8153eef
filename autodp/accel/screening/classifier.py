"""F's classifier and F itself: logistic regression, its metrics and threshold, and
ScreeningModel (rules + classifier), which scores rows and saves to / loads from a folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autodp.accel.embed import Encoder, build_encoder
from autodp.accel.screening.features import featurise
from autodp.accel.screening.rules import weak_labels
from autodp.data.io import Row, atomic_write

FORMAT = 1  # bump when the saved folder changes incompatibly


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


def fit_logreg(X: np.ndarray, y: np.ndarray, l2: float, unpenalised: int = 0,
               max_iter: int = 50) -> tuple[np.ndarray, float]:
    """Class-balanced, L2-penalised logistic regression by Newton's method (deterministic).

    Each class carries half the total weight, so the rarer noisy class is not ignored. The
    penalty spares the bias and the last ``unpenalised`` columns: shrunk alongside 1,024
    embedding dimensions, the few numeric features (the question-answer cosine above all) would
    lose to them on small training sets. ~1,000 features and a few thousand rows: a Newton
    step is a small linear solve, and about 10 steps converge.
    """
    n, d = X.shape
    pos = y.mean()
    if pos in (0.0, 1.0):
        raise ValueError("training labels are all one class: nothing to learn")
    w = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)) / n
    Xb = np.hstack([X, np.ones((n, 1))])
    penalty = np.full(d + 1, l2 / n)
    penalty[d - unpenalised:] = 0.0
    beta = np.zeros(d + 1)
    for _ in range(max_iter):
        p = sigmoid(Xb @ beta)
        grad = Xb.T @ (w * (p - y)) + penalty * beta
        hess = (Xb.T * (w * p * (1 - p))) @ Xb + np.diag(penalty + 1e-10)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-6:
            break
    return beta[:-1], float(beta[-1])


def binary_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float | int]:
    """Precision, recall and F1 of the noisy class, with the confusion counts."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    tp, fp = int((pred & truth).sum()), int((pred & ~truth).sum())
    fn, tn = int((~pred & truth).sum()), int((~pred & ~truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"rows": len(pred), "noisy": int(truth.sum()), "flagged": int(pred.sum()), "tp": tp, "fp": fp,
            "fn": fn, "tn": tn, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4), "accuracy": round((tp + tn) / max(len(pred), 1), 4)}


def best_threshold(scores: np.ndarray, truth: np.ndarray, beta: float = 1.0) -> tuple[float, float]:
    """(threshold, F-beta): the cut ``scores >= threshold`` that maximises F-beta on ``truth``."""
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], np.asarray(truth, bool)[order]
    tp = np.cumsum(t)
    flagged = np.arange(1, len(s) + 1)
    last = np.r_[s[1:] != s[:-1], True]  # a cut must keep tied scores together
    b2 = beta * beta
    fbeta = (1 + b2) * tp / (flagged + b2 * t.sum())
    i = int(np.argmax(np.where(last, fbeta, -1.0)))
    return float(s[i]), float(fbeta[i])


@dataclass
class ScreeningModel:
    """F: ``predict(rows)`` is True where a row needs processing."""

    encoder_cfg: dict[str, Any]
    coef: np.ndarray  # over standardised features
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)  # settings and provenance (config.json)
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json
    _encoder: Encoder | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # a copy sent to another process (a Ray actor) loads its own encoder there
        return {**self.__dict__, "_encoder": None}

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = build_encoder(self.encoder_cfg)
        return self._encoder

    def score_features(self, X: np.ndarray) -> np.ndarray:
        return sigmoid(((X - self.mean) / self.scale) @ self.coef + self.bias)

    def classifier_scores(self, rows: list[Row], cache: bool = True) -> np.ndarray:
        """The classifier's P(noisy), rules aside."""
        return self.score_features(featurise(rows, self.encoder, cache)) if rows else np.zeros(0)

    def scores(self, rows: list[Row], cache: bool = True) -> np.ndarray:
        """P(noisy) per row: 1.0 where a rule fires (those rows are not even embedded), else the
        classifier's probability."""
        out = weak_labels(rows).astype(float)
        rest = np.flatnonzero(out == 0)
        out[rest] = self.classifier_scores([rows[i] for i in rest], cache)
        return out

    def predict(self, rows: list[Row], cache: bool = True) -> np.ndarray:
        return self.scores(rows, cache) >= self.threshold

    @property
    def digest(self) -> str:
        """What F predicts with (encoder, weights, threshold), wherever it is saved: part of the
        CRM key of a prefix it screened."""
        h = hashlib.sha256(json.dumps([self.encoder_cfg, self.bias, self.threshold], sort_keys=True).encode())
        for a in (self.coef, self.mean, self.scale):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        """Write weights.npz, config.json and metrics.json into a fresh folder, then swap it in."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        try:
            with atomic_write(tmp / "weights.npz", "wb") as f:
                np.savez(f, coef=self.coef, bias=np.array(self.bias), mean=self.mean, scale=self.scale)
            config = {"format": FORMAT, "encoder": self.encoder_cfg, "threshold": self.threshold, **self.info}
            for name, obj in (("config.json", config), ("metrics.json", self.metrics)):
                with atomic_write(tmp / name) as f:
                    json.dump(obj, f, ensure_ascii=False, indent=2)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ScreeningModel":
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a screening model folder (no config.json)")
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if config.pop("format", None) != FORMAT:
            raise ValueError(f"{path}: screening model format is not {FORMAT}; rebuild it")
        with np.load(path / "weights.npz") as w:
            arrays = {k: w[k] for k in ("coef", "mean", "scale")}
            bias = float(w["bias"])
        metrics_file = path / "metrics.json"
        metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
        return cls(config.pop("encoder"), bias=bias, threshold=float(config.pop("threshold")), info=config,
                   metrics=metrics, **arrays)
