"""The binary screening model F (paper 3.3.1): does a row need processing (noisy) or not (clean)?

The paper labels 200k conversations with Qwen3-32B and distils the labels into Qwen2.5-7B. No
strong Chinese LLM runs offline here, so F starts from *rule-based weak labels*: each rule below
is a small named check for one kind of noise really present in CMD and cMedQA2 (see
shared/data/README.md). Rules are exact for what they describe but see only surface form, so F
adds a classifier for the rest: class-balanced logistic regression over [question embedding,
answer embedding, lengths, question-answer cosine], trained to separate rule-clean rows from
copies of them with *known noise* injected (by default answers swapped between rows).

    F(row) = noisy  iff  some rule fires  or  classifier(row) >= threshold

The threshold is chosen on a validation split; a held-out split scores F twice: (a) against the
weak labels, (b) against known noise injected into held-out rule-clean rows, where the truth is
exact. Only rule-clean rows are embedded, so inference costs one encoder pass over about half
of CMD plus a dot product.

Build: ``python -m autodp.accel.screening build [hydra overrides]``. Only counts and metrics are
logged or saved, never row text. An LLM judge as the labeller (the paper's route) is not wired
in: no strong Chinese LLM runs offline here, so it could not be tested.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autodp.accel.embed import Encoder, build_encoder, embed_rows, prompt_text
from autodp.data.io import TEXT_FIELDS, Row, atomic_write, fingerprint, load_rows
from autodp.data.noise import KINDS as BASE_NOISE, VARIANTS as NOISE_VARIANTS, inject_noise
from autodp.data.specs import train_rows
from autodp.ops.cleaning import repetition_ratio, special_ratio
from autodp.resources import PROJECT_ROOT, cache_dir, resolve_path

log = logging.getLogger(__name__)
FORMAT = 1  # bump when the saved folder changes incompatibly

# ============================================================================ weak labels
# Markup and contact rules look at question and answer; the others at the answer only: it is
# the fine-tuning target, while patients' typing habits in questions are part of the task.
Rule = Callable[[str, str], bool]  # (question, answer) -> noisy?
RULES: dict[str, Rule] = {}


def rule(fn: Rule) -> Rule:
    RULES[fn.__name__] = fn
    return fn


_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(?:\s[^<>]*)?/?>")  # "血压<90" is not a tag
_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#\d{2,5}|#x[0-9a-fA-F]{2,4});")
_CONTACT = re.compile(
    r"(?:https?|ftp)://|www\.[A-Za-z0-9-]+\.|[A-Za-z0-9-]+\.(?:com|cn|net|org)(?![A-Za-z])"
    r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
    # Mobile numbers are exactly 11 digits; landlines and 400 numbers need their dash, so lab
    # values such as "20807000" copies/ml are not phone numbers.
    r"|(?<!\d)1[3-9]\d{9}(?!\d)|(?<!\d)(?:0\d{2,3}|400)-\d{3,4}-?\d{4}(?!\d)"
    r"|(?:QQ|qq|扣扣|微信|VX|vx|wechat)号?\s*[:：]?\s*[A-Za-z0-9_-]{5,}")
# Sentence-final marks, closing brackets and quotes; "." because some answers end in ASCII.
_FINAL = frozenset("。！？!?….~～）)」』”\"'")
_BOILERPLATE = re.compile(
    r"答案.{0,6}协助到|这种疾病不易(?:纾解|全愈|康复|痊愈)|饮食状况和护理也是很关键"
    r"|以上.{0,3}[做作]为参考|抗衡.{0,8}的信心|一家.{0,4}医院诊病")
_ADVERTISING = re.compile(r"专科医院|治愈率|点击|我们医院|本院|黑矾|咨询热线|在线咨询|免费咨询")
_GREETING = re.compile(r"^\s*(?:你好|您好|亲爱的|很高兴(?:为你|为您|回答|解答)|hello|hi\b)", re.I)
_SIGN_OFF = re.compile(r"(?:祝[^。！？!?]{0,15}|谢谢[^。！？!?]{0,4}|[希期]望[^。！？!?]{0,20}(?:帮助|协助)[^。！？!?]{0,8})"
                       r"[。！？!?.~～]*\s*$")
# Artefacts of the dataset's synonym substitution that are not Chinese ("放柔病情" for 加重病情).
_SUBSTITUTION = re.compile(r"放柔|放慢康复速度")
_DOUBLED = re.compile(r"([。，、；：！？,;:!?])\1|(?<!\.)\.\.(?!\.)|[，,][。.]|。[，,]")
_CJK = r"[\u4e00-\u9fff]"
_ASCII_IN_CJK = re.compile(rf"{_CJK}[,;:?!.]{_CJK}")
_ODD_SPACE = re.compile(r"^\s|\s$|[\u3000\u00a0]")
MIN_ANSWER_CHARS = 20
MAX_SPECIAL_RATIO = 0.02  # CMD's 99th percentile is 0; the worst real row has 0.024
MAX_REPETITION = 0.2  # share of repeated 10-grams; 5 of 2,000 CMD answers exceed it


@rule
def markup(q: str, a: str) -> bool:
    return any(_TAG.search(t) or _ENTITY.search(t) for t in (q, a))


@rule
def contact(q: str, a: str) -> bool:
    return any(_CONTACT.search(t) for t in (q, a))


@rule
def truncated(q: str, a: str) -> bool:
    a = a.rstrip()
    return not a or a[-1] not in _FINAL


@rule
def boilerplate(q: str, a: str) -> bool:
    return bool(_BOILERPLATE.search(a))


@rule
def advertising(q: str, a: str) -> bool:
    return bool(_ADVERTISING.search(a))


@rule
def greeting_sign_off(q: str, a: str) -> bool:
    return bool(_GREETING.search(a) or _SIGN_OFF.search(a))


@rule
def substitution_artefact(q: str, a: str) -> bool:
    return bool(_SUBSTITUTION.search(a))


@rule
def doubled_punct(q: str, a: str) -> bool:
    return bool(_DOUBLED.search(a))


@rule
def ascii_punct_in_cjk(q: str, a: str) -> bool:
    return bool(_ASCII_IN_CJK.search(a))


@rule
def odd_whitespace(q: str, a: str) -> bool:
    return bool(_ODD_SPACE.search(a))


@rule
def too_short(q: str, a: str) -> bool:
    return len(a.strip()) < MIN_ANSWER_CHARS


@rule
def special_chars(q: str, a: str) -> bool:
    return special_ratio(a) > MAX_SPECIAL_RATIO


@rule
def repetitive(q: str, a: str) -> bool:
    return repetition_ratio(a, 10) > MAX_REPETITION


def rule_hits(rows: list[Row]) -> dict[str, np.ndarray]:
    """For every rule, which rows it flags."""
    pairs = [(prompt_text(r), r["output"]) for r in rows]
    return {name: np.array([fn(q, a) for q, a in pairs], dtype=bool) for name, fn in RULES.items()}


def weak_labels(rows: list[Row]) -> np.ndarray:
    """Noisy (True) when any rule fires."""
    return np.logical_or.reduce(list(rule_hits(rows).values()), axis=0) if rows else np.zeros(0, bool)


# ============================================================================ known noise
# Duplicates, exact or near, are left out: a repeated row is a property of the dataset
# (minhash_dedup's job), not of the row, so no per-row model can see it.
NOISE_KINDS = tuple(k for k in (*BASE_NOISE, *NOISE_VARIANTS) if k not in ("duplicate", "near_duplicate"))


def inject_known_noise(rows: list[Row], fraction: float, seed: int,
                       kinds: tuple[str, ...] | list[str]) -> tuple[list[Row], list[str | None]]:
    """Corrupt ``fraction`` of the rows, kinds in turn; returns the rows and each row's kind
    (None where the text did not change, e.g. an answer swapped with itself)."""
    unknown = set(kinds) - set(NOISE_KINDS)
    if unknown:
        raise ValueError(f"unknown noise kinds {sorted(unknown)}; known: {NOISE_KINDS}")
    rng = random.Random(f"screening-noise-{seed}")
    picked = rng.sample(range(len(rows)), round(fraction * len(rows)))
    out, kind_of = list(rows), [None] * len(rows)
    for j, kind in enumerate(kinds):
        idx = picked[j::len(kinds)]
        sub = [rows[i] for i in idx]
        new = (inject_noise(sub, 1.0, seed, (kind,)) if kind in BASE_NOISE
               else [NOISE_VARIANTS[kind](r, rng, rows) for r in sub])
        for i, r in zip(idx, new):
            if any(r[f] != rows[i][f] for f in TEXT_FIELDS):
                out[i], kind_of[i] = r, kind
    return out, kind_of


# ============================================================================ features
# Rule-clean rows all end properly and have few symbols, so only these vary among the rows the
# classifier sees; the cosine is what exposes an answer to another question.
NUMERIC = ("log_answer_chars", "log_question_chars", "qa_cosine")


def numeric_features(rows: list[Row], q: np.ndarray, a: np.ndarray) -> np.ndarray:
    lengths = np.log1p([[len(r["output"]), len(prompt_text(r))] for r in rows]).reshape(len(rows), 2)
    return np.hstack([lengths, np.einsum("ij,ij->i", q, a)[:, None]])


def featurise(rows: list[Row], encoder: Encoder, cache: bool = True) -> np.ndarray:
    """[question embedding, answer embedding, NUMERIC] per row."""
    q = embed_rows(rows, encoder, "prompt", cache)
    a = embed_rows(rows, encoder, "output", cache)
    return np.hstack([q, a, numeric_features(rows, q, a)]).astype(np.float64)


# ============================================================================ classifier
def _sigmoid(z: np.ndarray) -> np.ndarray:
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
        p = _sigmoid(Xb @ beta)
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

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = build_encoder(self.encoder_cfg)
        return self._encoder

    def score_features(self, X: np.ndarray) -> np.ndarray:
        return _sigmoid(((X - self.mean) / self.scale) @ self.coef + self.bias)

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


# ============================================================================ building F
def split_by_question(rows: list[Row], val: float, test: float, seed: int) -> np.ndarray:
    """0 train / 1 val / 2 test per row; rows sharing a question (duplicates) share a split."""
    questions = sorted({r["instruction"] for r in rows})
    random.Random(f"screening-split-{seed}").shuffle(questions)
    n_test, n_val = round(test * len(questions)), round(val * len(questions))
    part = {q: 2 if i < n_test else 1 if i < n_test + n_val else 0 for i, q in enumerate(questions)}
    return np.array([part[r["instruction"]] for r in rows])


def clean_vs_noise(clean: list[Row], encoder: Encoder, cfg: Mapping[str, Any], seed: int,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classifier's data: rule-clean rows (0) and known noise injected into copies of them
    (1). Returns features, labels and which rows the rules flag (only injected ones can be)."""
    corrupted, kind_of = inject_known_noise(clean, cfg["fraction"], seed, list(cfg["kinds"]))
    noisy = [r for r, k in zip(corrupted, kind_of) if k is not None]
    X = np.vstack([featurise(clean, encoder), featurise(noisy, encoder, cache=False)])
    y = np.r_[np.zeros(len(clean), bool), np.ones(len(noisy), bool)]
    return X, y, np.r_[np.zeros(len(clean), bool), weak_labels(noisy)]


def build_screening(rows: list[Row], cfg: Mapping[str, Any], out: str | os.PathLike | None = None) -> ScreeningModel:
    """Label, split, train and evaluate F on ``rows``; save it to ``out`` when given.

    F flags a row when a rule fires or the classifier's score reaches the threshold. The rules
    are exact for the noise they describe, so the classifier learns only the rest: it separates
    rule-clean rows from known noise injected into them. ``cfg`` is the ``screening`` config
    group (conf/screening/default.yaml).
    """
    seed = int(cfg["seed"])
    t0 = time.perf_counter()
    encoder_cfg = dict(cfg["encoder"])
    encoder = build_encoder(encoder_cfg)
    hits = rule_hits(rows)
    labels = np.logical_or.reduce(list(hits.values()), axis=0)
    part = split_by_question(rows, cfg["split"]["val"], cfg["split"]["test"], seed)
    split = {name: [r for r, p in zip(rows, part) if p == i] for i, name in enumerate(("train", "val", "test"))}
    clean = {name: [r for r, p, noisy in zip(rows, part, labels) if p == i and not noisy]
             for i, name in enumerate(("train", "val"))}
    if not (clean["train"] and clean["val"]):
        raise ValueError(f"{len(rows)} rows leave no rule-clean rows in the train or val split: too few to build F")
    t_embed = time.perf_counter()
    # Distinct noise seeds per split: one seed would corrupt the same positions in each.
    Xtr, ytr, _ = clean_vs_noise(clean["train"], encoder, cfg["augment"], seed)
    Xva, yva, rules_va = clean_vs_noise(clean["val"], encoder, cfg["augment"], seed + 1)
    embed_seconds = time.perf_counter() - t_embed
    # The threshold is F's (rules or classifier) best F-beta on all validation rows: the
    # rule-noisy ones are flagged whatever the threshold, and they count.
    n_rule_noisy = len(split["val"]) - len(clean["val"])
    truth_va = np.r_[yva, np.ones(n_rule_noisy, bool)]
    t_train = time.perf_counter()
    mean, scale = Xtr.mean(axis=0), Xtr.std(axis=0) + 1e-6
    best: tuple[float, float, float, np.ndarray, float] | None = None  # (fbeta, l2, threshold, coef, bias)
    for l2 in cfg["l2"]:
        coef, bias = fit_logreg((Xtr - mean) / scale, ytr.astype(float), float(l2), len(NUMERIC))
        scores = np.where(rules_va, 1.0, _sigmoid(((Xva - mean) / scale) @ coef + bias))
        thr, fb = best_threshold(np.r_[scores, np.ones(n_rule_noisy)], truth_va, float(cfg["beta"]))
        if best is None or fb > best[0]:
            best = (fb, float(l2), thr, coef, bias)
    fb, l2, thr, coef, bias = best
    train_seconds = time.perf_counter() - t_train
    info = {"features": {"embedding_dim": int((Xtr.shape[1] - len(NUMERIC)) // 2), "numeric": list(NUMERIC)},
            "labels": "rules", "rules": list(RULES), "l2": l2, "data_fingerprint": fingerprint(rows),
            "settings": _plain(cfg)}
    model = ScreeningModel(encoder_cfg, coef, bias, mean, scale, thr, info, _encoder=encoder)
    model.metrics = {
        "rows": len(rows), "split_rows": {k: len(v) for k, v in split.items()},
        "classifier_rows": {"train": len(ytr), "val": len(yva)}, "threshold": round(thr, 4), "l2": l2,
        f"val_f{cfg['beta']:g}": round(fb, 4),
        "rule_hit_rate": {k: round(float(v.mean()), 4) for k, v in hits.items()},
        "weak_noisy_rate": round(float(labels.mean()), 4),
        **evaluate_holdout(model, split["test"], cfg["holdout"], seed + 2),
        "seconds": {"embed": round(embed_seconds, 2), "train": round(train_seconds, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }
    log.info("screening model: %d rows, threshold %.3f, l2 %g; held-out known-noise P %.3f R %.3f",
             len(rows), thr, l2, model.metrics["known_noise"]["precision"], model.metrics["known_noise"]["recall"])
    if out is not None:
        model.save(out)
    return model


def evaluate_holdout(model: ScreeningModel, rows: list[Row], cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """F on held-out rows: (a) against the weak labels (recall is 1 by construction: the
    precision says how many rule-clean rows the classifier adds); (b) against known noise
    injected into the rule-clean rows, where the truth is exact, with the rules alone and the
    classifier alone beside F."""
    labels = weak_labels(rows)
    weak = binary_metrics(model.predict(rows), labels)
    clean = [r for r, noisy in zip(rows, labels) if not noisy]
    corrupted, kind_of = inject_known_noise(clean, cfg["fraction"], seed, list(cfg["kinds"]))
    truth = np.array([k is not None for k in kind_of], dtype=bool)
    rules = weak_labels(corrupted)
    classifier = model.classifier_scores(corrupted, cache=False) >= model.threshold
    pred = rules | classifier  # = model.predict(corrupted), without embedding twice
    kinds = np.array([k or "" for k in kind_of])
    return {
        "weak_labels": weak,
        "known_noise": binary_metrics(pred, truth),
        "known_noise_rules_only": binary_metrics(rules, truth),
        "known_noise_classifier_only": binary_metrics(classifier, truth),
        "known_noise_recall_by_kind": {
            k: {"rows": int((kinds == k).sum()), "F": round(float(pred[kinds == k].mean()), 4),
                "rules": round(float(rules[kinds == k].mean()), 4),
                "classifier": round(float(classifier[kinds == k].mean()), 4)}
            for k in dict.fromkeys(cfg["kinds"]) if (kinds == k).any()},
    }


def _plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else json.loads(json.dumps(cfg))


# ============================================================================ config entry points
def default_path(cfg: Mapping[str, Any], rows: list[Row], dataset: str) -> Path:
    """cache_dir("screening", "<dataset>-<digest>"): the digest covers the settings and the rows'
    content (not their path), so a changed config or dataset never loads a stale F."""
    settings = {k: v for k, v in _plain(cfg).items() if k not in ("path", "data")}
    digest = hashlib.sha256(json.dumps([settings, fingerprint(rows)], sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir("screening") / f"{dataset}-{digest}"


def training_rows(cfg: Mapping[str, Any]) -> list[Row]:
    """F's rows: ``screening.data``, else the rows the search may process (train_limit and the
    validation and test hold-outs respected), so F never learns from a row it is scored on."""
    data = cfg["screening"]["data"]
    return load_rows(resolve_path(data)) if data else train_rows(cfg)


def screening_model_path(cfg: Mapping[str, Any]) -> Path:
    """Where F for a composed run config is saved: ``screening.path`` if set, else the cached F
    for these settings and rows, built on first use."""
    s = cfg["screening"]
    if s["path"]:
        return resolve_path(s["path"])
    rows = training_rows(cfg)
    path = default_path(s, rows, cfg["dataset"]["name"])
    if not (path / "config.json").is_file():
        build_screening(rows, s, path)
    return path


def screening_model(cfg: Mapping[str, Any]) -> ScreeningModel:
    return ScreeningModel.load(screening_model_path(cfg))


def compose(overrides: list[str]) -> Any:
    """The project config with ``overrides``; adds the screening group if config.yaml lacks it."""
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        if "screening" not in hydra_compose("config"):
            overrides = ["+screening=default", *overrides]
        return hydra_compose("config", overrides)


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "build":
        print("usage: python -m autodp.accel.screening build [hydra overrides, e.g. dataset=cmd "
              "screening.path=/tmp/F screening/encoder=bge screening.encoder.path=/models/bge]")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = compose(argv[1:])
    rows = training_rows(cfg)
    out = resolve_path(cfg.screening.path) if cfg.screening.path else default_path(cfg.screening, rows, cfg.dataset.name)
    model = build_screening(rows, cfg.screening, out)
    print(json.dumps({"path": str(out), **model.metrics}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
