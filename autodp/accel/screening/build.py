"""Building F: known training noise, the split by question, training and held-out evaluation,
and where F for a run config lives (built on first use, then loaded from the cache)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autodp.accel.embed import Encoder, build_encoder
from autodp.accel.screening.classifier import ScreeningModel, best_threshold, binary_metrics, fit_logreg, sigmoid
from autodp.accel.screening.features import NUMERIC, featurise
from autodp.accel.screening.rules import RULES, rule_hits, weak_labels
from autodp.data.io import TEXT_FIELDS, Row, fingerprint, load_rows
from autodp.data.noise import KINDS as BASE_NOISE, VARIANTS as NOISE_VARIANTS, inject_noise
from autodp.data.specs import train_rows
from autodp.resources import cache_dir, resolve_path

log = logging.getLogger(__package__)  # F logs as one package, autodp.accel.screening

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
        scores = np.where(rules_va, 1.0, sigmoid(((Xva - mean) / scale) @ coef + bias))
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


# ============================================================================ F for a run config
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
    """F for a composed run config, loaded (built first when not cached; see screening_model_path)."""
    return ScreeningModel.load(screening_model_path(cfg))
