"""The Generation team: dedup of new pairs, the generation cap, filling missing fields; real models
except for the dedup contract, which needs a generator that returns near-copies on purpose."""
from __future__ import annotations

import copy
import logging

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from autodp.llm import Completion, LLMClient
from autodp.ops.base import build_op, run_op
from autodp.ops.generation import FillMissingAnswer, FillMissingQuestion, GenerateQAFromShots, is_complete, novel
from autodp.ops.llm_op import stable_sample
from autodp.ops.optimization import OptimizeAnswer
from autodp.ops.llm_checks import CUT_OFF, ECHO, FORMAT, failure
from autodp.resources import PROJECT_ROOT
from autodp.strategy import Team
from llm_testing import fresh, gemma  # noqa: F401 - fixtures

DONE = Completion("", "stop")
NEW_Q = "孕妇可以吃螃蟹吗？\n怀孕三个月，最近很想吃螃蟹，听说螃蟹性寒，担心对胎儿不好，请问能不能吃？"
NEW_A = "螃蟹性寒，孕早期应少吃或不吃，以免引起腹痛等不适；孕中晚期可适量食用，但要彻底蒸熟，避免食物中毒和过敏。"


def row(rid: str, q: str, a: str) -> dict:
    return {"id": rid, "instruction": q, "input": "", "output": a, "meta": {}}


def nudge(text: str) -> str:
    """One character changed in the middle: a near-copy."""
    i = len(text) // 2
    return text[:i] + ("的" if text[i] != "的" else "了") + text[i + 1:]


class Scripted:
    """A deterministic generator, only for the dedup contract: returns the given answers in turn."""

    model_id, batch_size = "scripted", 64

    def __init__(self, *answers: str):
        self.answers, self.requests = list(answers), []

    def run(self, requests):
        self.requests += requests
        return [Completion(self.answers.pop(0), "stop") for _ in requests]


# --- dedup -----------------------------------------------------------------------------------

def test_novel_drops_near_copies_of_rows_and_of_earlier_candidates(cmd_rows):
    rows = cmd_rows[:50]
    near = row("c1", nudge(rows[3]["instruction"]), nudge(rows[3]["output"]))
    fresh_pair = row("c2", NEW_Q, NEW_A)
    assert novel(rows, [near, fresh_pair, row("c3", NEW_Q, nudge(NEW_A)), row("c4", "头痛", "多喝水")]) == [
        False, True, False, True]
    assert novel(rows, []) == []


def test_generated_near_duplicates_are_dropped(cmd_rows):
    rows = cmd_rows[:40]
    src = rows[7]
    backend = Scripted(f"{nudge(src['instruction'])}\n【回答】{nudge(src['output'])}",  # near-copy of a row
                       f"{NEW_Q}\n【回答】{NEW_A}",  # new
                       f"{NEW_Q}\n【回答】{nudge(NEW_A)}",  # near-copy of the new pair
                       f"{src['instruction']}\n【回答】{src['output']}")  # exact copy of a row
    op = GenerateQAFromShots(llm=LLMClient(backend, chat=False), num_new=4, k=2, seed=3)
    out, report = run_op(op, rows)
    assert out[:40] == rows and [r["instruction"] for r in out[40:]] == [NEW_Q]
    new = out[40]
    assert new["output"] == NEW_A and new["id"].startswith("generate_qa_from_shots-")
    assert new["meta"]["generated_by"] == "generate_qa_from_shots" and len(new["meta"]["shots"]) == 2
    assert set(new["meta"]["shots"]) <= {r["id"] for r in rows}
    stats = op.last_stats
    assert (stats["processed"], stats["near_duplicates"], stats["added"], stats["rejected"]) == (4, 3, 1, {})
    assert report.rows_out == 41 and len(backend.requests) == 4
    prompt = backend.requests[0].prompt
    assert isinstance(prompt, str) and prompt.endswith("\n\n【问题】") and prompt.count("\n【回答】") == 2


def test_unusable_generations_are_counted_by_reason():
    op = GenerateQAFromShots(llm={})
    assert op.check(Completion("孕妇可以吃螃蟹吗？\n【回答】孕妇可以吃螃蟹吗", "stop")) == (None, ECHO)
    assert op.check(Completion("孕妇可以吃螃蟹吗？螃蟹性寒。", "stop")) == (None, FORMAT)
    assert op.check(Completion("孕妇可以吃螃蟹吗？\n【回答】螃蟹性寒，孕早期", "length")) == (None, CUT_OFF)
    assert op.check(Completion(f"{NEW_Q}\n【回答】{NEW_A}", "stop")) == ((NEW_Q, NEW_A), None)


def test_large_inputs_get_no_new_pairs(cmd_rows):
    backend = Scripted()
    op = GenerateQAFromShots(llm=LLMClient(backend, chat=False), num_new=2000, max_input_rows=1000)
    rows = cmd_rows[:1001]
    assert len(rows) == 1001 and op(rows) == rows and backend.requests == [] and op.last_stats["added"] == 0


# --- configuration ---------------------------------------------------------------------------

def test_teams_config_builds_the_generation_team():
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["llm=openai_vllm"])
    ops = [build_op(s) for s in OmegaConf.to_container(cfg.teams, resolve=True)["generation"]]
    assert [op.name for op in ops] == ["generate_qa_from_shots", "fill_missing_question", "fill_missing_answer"]
    assert all(op.team is Team.GENERATION and op.max_rows is None for op in ops)
    gen = ops[0]
    assert (gen.num_new, gen.max_input_rows, gen.k, gen.dedup_threshold) == (2000, 1000, 4, 0.7)  # the artifact's


# --- real model ------------------------------------------------------------------------------

@pytest.mark.slow
def test_generate_from_shots_with_the_cpu_model(gemma, cmd_rows, tmp_path, caplog):
    rows = cmd_rows[:30]
    before = copy.deepcopy(rows)
    op = GenerateQAFromShots(llm=fresh(gemma, tmp_path), max_rows=2, k=3, max_tokens=200, tokens_per_char=1.0)
    with caplog.at_level(logging.INFO):
        out, report = run_op(op, rows)
    stats = op.last_stats
    print(f"\ngenerate_qa_from_shots: {stats}, {stats['llm_seconds'] / 2:.1f} s/pair")
    assert "generate_qa_from_shots: generating 2 of 2000 pairs (fraction=None, max_rows=2)" in caplog.text
    assert rows == before and out[:30] == rows and report.rows_out == 30 + stats["added"]
    assert stats["processed"] == 2 == stats["added"] + stats["near_duplicates"] + sum(stats["rejected"].values())
    for new in out[30:]:
        assert failure(new["instruction"], DONE, "zh") is None and failure(new["output"], DONE, "zh") is None
        assert new["meta"]["generated_by"] == op.name
    assert len({r["id"] for r in out}) == len(out)


@pytest.mark.slow
def test_fill_missing_fields_with_the_cpu_model(gemma, cmd_rows, tmp_path):
    rows = copy.deepcopy(cmd_rows[:10])
    rows[1]["output"] = rows[4]["output"] = ""
    rows[6]["instruction"] = ""
    for op, holes, field in ((FillMissingAnswer(llm=fresh(gemma, tmp_path), k=2, tokens_per_char=1.0), {1, 4}, "output"),
                             (FillMissingQuestion(llm=fresh(gemma, tmp_path), k=2, tokens_per_char=1.0), {6}, "instruction")):
        out, report = run_op(op, rows)
        stats = op.last_stats
        print(f"\n{op.name}: {stats}")
        assert stats["processed"] == len(holes) == stats["filled"] + sum(stats["rejected"].values())
        assert all(a == b for i, (a, b) in enumerate(zip(rows, out)) if i not in holes)
        for i in holes:
            assert out[i][field] == "" or failure(out[i][field], DONE, "zh") is None
        assert sum(out[i][field] != "" for i in holes) == stats["filled"] == report.rows_changed


def test_picks_and_shots_do_not_depend_on_the_other_rows(cmd_rows):
    """What an LLM operator picks survives a prefix that removed other rows: its prompts, hence
    its cached answers, are shared across strategies."""
    rows = [r for r in cmd_rows[:200] if is_complete(r)]
    op = OptimizeAnswer(llm={}, max_rows=10, seed=0)
    picked = [rows[i]["id"] for i in op.pick(rows)]
    shots = [rows[j]["id"] for j in stable_sample(rows, 3, "0/x")]
    fewer = [r for i, r in enumerate(rows) if r["id"] in picked + shots or i % 3]
    assert len(fewer) < len(rows) * 0.75 and len(picked) == 10
    assert [fewer[i]["id"] for i in op.pick(fewer)] == picked
    assert [fewer[j]["id"] for j in stable_sample(fewer, 3, "0/x")] == shots
    assert [rows[i]["id"] for i in OptimizeAnswer(llm={}, max_rows=10, seed=1).pick(rows)] != picked
