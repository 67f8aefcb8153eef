"""The Optimization team: checks, prompts, and the operators on real CMD rows with real models."""
from __future__ import annotations

import copy
import logging
import time

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from autodp.llm import Completion
from autodp.ops.base import OPERATORS, build_op, run_op
from autodp.ops.llm_checks import CUT_OFF, EMPTY, LANGUAGE, LENGTH, echoes, failure, language, size
from autodp.ops.llm_prompts import rewrite_qa_task, rewrite_task, split_pair, strip_label
from autodp.ops.optimization import OptimizeAnswer, OptimizeQA, OptimizeQuestion
from autodp.resources import PROJECT_ROOT
from autodp.strategy import Team
from llm_testing import fresh, gemma, smollm2  # noqa: F401 - fixtures

DONE = Completion("", "stop")
ORIGINAL = "高血压患者要低盐饮食，按时服药，定期监测血压。"  # 23 characters


def ids(rows):
    return [r["id"] for r in rows]


# --- checks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, lang", [
    ("高血压患者要低盐饮食", "zh"), ("阿莫西林 amoxicillin 0.5g，一日三次", "zh"), ("Take 0.5 g twice a day.", "en"),
    ("Take 高血压 medicine twice a day", "en"), ("高血压 hypertension", "zh"), ("12345 ？！", None),
])
def test_language(text, lang):
    assert language(text) == lang


def test_failure_names_the_first_reason():
    near = "高血压患者应低盐饮食，按时服药，定期监测血压。"  # 23 characters, a real rewrite
    assert failure(near, DONE, "zh", ORIGINAL, 0.1) is None
    assert failure("  \n", DONE, "zh", ORIGINAL, 0.1) == EMPTY
    assert failure(near, Completion(near, "length"), "zh", ORIGINAL, 0.1) == CUT_OFF
    assert failure("Patients should eat less salt and take their pills.", DONE, "zh", ORIGINAL, 0.1) == LANGUAGE
    assert failure("高血压患者要低盐饮食。", DONE, "zh", ORIGINAL, 0.1) == LENGTH
    assert failure(near + "注意休息，戒烟限酒。", DONE, "zh", ORIGINAL, 0.1) == LENGTH
    assert failure(near + "注意休息，戒烟限酒。", DONE, "zh", ORIGINAL, None) is None  # no length check
    # within +-10%: 23 +- 2.3 characters; whitespace does not count
    assert failure("高血压患者要低盐饮食，按时服药，定期监测血压", DONE, "zh", ORIGINAL, 0.1) is None
    assert failure("高 血 压 患 者 要 低 盐 饮 食 ，按时服药。", DONE, "zh", ORIGINAL, 0.1) == LENGTH
    assert size("a b\u3000c\n") == 3 and echoes("头痛 怎么办", "头痛怎么办？吃什么药") and not echoes("多休息", "头痛")


# --- prompts ---------------------------------------------------------------------------------

def test_base_and_chat_prompts():
    base = rewrite_task("answer", ORIGINAL, "zh", 0.1, chat=False)
    assert isinstance(base.prompt, str) and base.prompt.endswith(f"【原文】{ORIGINAL}\n【改写】")
    assert "字数与原文相差不超过10%" in base.prompt and base.prompt.count("【原文】") == 3  # 2 shots + the row
    assert base.stop == ("【原文】", "\n\n")
    chat = rewrite_task("question", "头痛怎么办", "zh", 0.2, chat=True)
    assert [m["role"] for m in chat.prompt] == ["system", "user"] and chat.stop == ()
    assert "不超过20%" in chat.prompt[0]["content"] and chat.prompt[1]["content"].endswith("【原文】头痛怎么办\n【改写】")
    qa = rewrite_qa_task("头痛怎么办", "多休息。", "en", 0.1, chat=False)
    assert qa.prompt.endswith("Original question: 头痛怎么办\nOriginal answer: 多休息。\nQuestion:")
    assert split_pair("【问题】头痛怎么办？\n【回答】多休息。", "zh") == ("头痛怎么办？", "多休息。")
    assert split_pair("头痛怎么办？多休息。", "zh") is None
    assert strip_label("【改写】 多休息。", "【改写】") == "多休息。" and strip_label("多休息。", "【改写】") == "多休息。"
    with pytest.raises(ValueError, match="no prompts for language 'fr'"):
        rewrite_task("answer", "x", "fr", 0.1, chat=True)


# --- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("llm", ["gemma3", "smollm2", "openai_vllm", "vllm"])
def test_teams_config_builds_the_optimization_team_for_every_llm(llm):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"llm={llm}"])
    specs = OmegaConf.to_container(cfg.teams, resolve=True)["optimization"]
    ops = [build_op(s) for s in specs]  # builds no client: that happens on first use
    assert [op.name for op in ops] == ["optimize_question", "optimize_answer"]
    assert all(op.team is Team.OPTIMIZATION and op.length_tolerance == 0.1 and op.lang == "zh" for op in ops)
    assert ops[0].llm == OmegaConf.to_container(cfg.llm.client) and ops[0].max_rows == cfg.llm.max_rows
    assert "last_stats" not in ops[0].params() and ops[0].params()["max_rows"] == cfg.llm.max_rows
    assert {n for n, c in OPERATORS.items()  # the project's own (test files register probes)
            if c.team is Team.OPTIMIZATION and c.__module__.startswith("autodp.")} == {
        "optimize_question", "optimize_answer", "optimize_qa"}


def test_bad_parameters_fail_early():
    with pytest.raises(ValueError, match="length_tolerance"):
        OptimizeAnswer(llm={}, length_tolerance=-0.1)
    with pytest.raises(ValueError, match="max_rows"):
        OptimizeAnswer(llm={}, max_rows=-1)
    with pytest.raises(ValueError, match="fraction"):
        OptimizeAnswer(llm={}, fraction=0)


def test_llm_work_is_a_share_of_the_rows_with_work_capped_by_max_rows(cmd_rows):
    op = OptimizeAnswer(llm={}, fraction=0.02)
    assert [op.work(n) for n in (400, 80, 24, 1, 0)] == [8, 2, 1, 1, 0]
    assert OptimizeAnswer(llm={}, fraction=0.02, max_rows=5).work(400) == 5
    assert OptimizeAnswer(llm={}).work(400) == 400
    assert len(op.pick(cmd_rows[:400])) == 8 and len(op.pick(cmd_rows[:80])) == 2


def test_nothing_to_do_loads_no_model(cmd_rows):
    rows = [{**r, "output": ""} for r in cmd_rows[:5]]
    op = OptimizeAnswer(llm={"backend": "transformers", "model": "/no/such/model"})
    assert op(rows) == rows and op.last_stats["processed"] == 0


# --- the operators on real rows --------------------------------------------------------------

def check_contract(op, rows, out, report):
    """Row count and order kept; unprocessed rows untouched; rejected rows keep their text and
    every processed row is counted once; used rewrites pass every check."""
    stats = op.last_stats
    assert ids(out) == ids(rows) and report.rows_out == report.rows_in == len(rows)
    assert stats["rewritten"] + stats["unchanged"] + sum(stats["rejected"].values()) == stats["processed"]
    changed = [(a, b) for a, b in zip(rows, out) if a != b]
    assert len(changed) == stats["rewritten"] == report.rows_changed
    for a, b in changed:
        for f in op.fields:
            assert failure(b[f], DONE, op.lang, a[f], op.length_tolerance) is None
        assert {k: v for k, v in b.items() if k not in op.fields} == {k: v for k, v in a.items() if k not in op.fields}


def test_cut_off_rewrites_are_rejected_counted_and_keep_the_original(gemma, cmd_rows, tmp_path):
    rows = cmd_rows[:6]
    before = copy.deepcopy(rows)
    op = OptimizeAnswer(llm=fresh(gemma, tmp_path), max_tokens=3, tokens_per_char=1.0)
    out, report = run_op(op, rows)
    assert rows == before and out == rows  # a 3-token budget cuts every rewrite
    assert op.last_stats["processed"] == 6 and sum(op.last_stats["rejected"].values()) == 6
    assert op.last_stats["rejected"].get(CUT_OFF, 0) >= 5
    check_contract(op, rows, out, report)


@pytest.mark.slow
def test_optimize_answer_caps_rows_checks_rewrites_and_reruns_from_cache(gemma, cmd_rows, tmp_path, caplog):
    rows = cmd_rows[:12]
    before = copy.deepcopy(rows)
    op = OptimizeAnswer(llm=fresh(gemma, tmp_path), max_rows=4, tokens_per_char=1.0, seed=0)
    with caplog.at_level(logging.INFO):
        out, report = run_op(op, rows)
    assert "optimize_answer: processing 4 of 12 rows (fraction=None, max_rows=4)" in caplog.text
    assert not any(r["output"][:8] in caplog.text for r in rows)  # logs carry counts, not text
    stats = op.last_stats
    print(f"\noptimize_answer: {stats}, {stats['llm_seconds'] / 4:.1f} s/row")
    assert rows == before and stats["processed"] == 4 and stats["llm_cached"] == 0
    check_contract(op, rows, out, report)
    t0 = time.perf_counter()
    again, _ = run_op(OptimizeAnswer(llm=op.llm, max_rows=4, tokens_per_char=1.0, seed=0), rows)
    assert again == out and time.perf_counter() - t0 < 1.0  # every answer comes from the cache


@pytest.mark.slow
def test_optimize_question_only_on_flagged_rows(gemma, cmd_rows, tmp_path):
    rows = cmd_rows[:8]
    flagged = {rows[2]["id"], rows[5]["id"]}
    op = OptimizeQuestion(llm=fresh(gemma, tmp_path), only_ids=flagged, tokens_per_char=1.0)
    assert op.targets(rows) == [r["id"] in flagged for r in rows]
    out, report = run_op(op, rows)
    print(f"\noptimize_question: {op.last_stats}")
    assert op.last_stats["processed"] == 2
    assert all(a == b for a, b in zip(rows, out) if a["id"] not in flagged)
    check_contract(op, rows, out, report)


@pytest.mark.slow
def test_optimize_qa_rewrites_both_or_neither(gemma, cmd_rows, tmp_path):
    rows = cmd_rows[20:22]
    op = OptimizeQA(llm=fresh(gemma, tmp_path), tokens_per_char=1.0)
    out, report = run_op(op, rows)
    print(f"\noptimize_qa: {op.last_stats}")
    assert op.last_stats["processed"] == 2
    check_contract(op, rows, out, report)  # a changed row passed the checks on both fields


@pytest.mark.slow
def test_chat_model_on_english_rows(smollm2, tmp_path):
    rows = [{"id": f"en{i}", "instruction": q, "input": "", "output": a, "meta": {}} for i, (q, a) in enumerate([
        ("what helps a headache", "rest in a dark room, drink water, and take paracetamol if it does not go away"),
        ("can i run with a cold", "light exercise is ok if symptoms are above the neck, but rest if you have fever"),
    ])]
    op = OptimizeAnswer(llm=fresh(smollm2, tmp_path), lang="en", tokens_per_char=2.0, temperature=0.0)
    out, report = run_op(op, rows)
    print(f"\nSmolLM2 optimize_answer (en): {op.last_stats}")
    assert op.last_stats["processed"] == 2
    check_contract(op, rows, out, report)
