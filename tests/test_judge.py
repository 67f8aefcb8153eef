"""The paper's judge: verdicts read from realistic answers, both orders combined (a flip is a
tie), the win/tie/loss table with its interval, and the local judge end to end through the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from autodp.data.io import load_rows
from autodp.judge.pairwise import OPTIONS, UNPARSED, Judgment, judge_pairs, outcome, prompt
from autodp.judge.verdict import LOSS, TIE, WIN, parse_verdict
from autodp.judge.winrate import win_rate
from conftest import ROOT

# Answers as judges of several families write them: the option verbatim, reworded, after the
# result line, in brackets, in either language; and answers that name no option.
ANSWERS = [
    ("回答1优于回答2", WIN), ("回答1与回答2相当", TIE), ("回答1劣于回答2", LOSS),
    ("评估结果：回答2更好。回答1遗漏了用药禁忌。", LOSS), ("评估结果：\n回答1胜", WIN), ("【平局】", TIE),
    ("回答一更好，因为它更准确。", WIN), ("两者相当，都提到了就医建议。", TIE), ("回答2不如回答1全面", WIN),
    ("Response 1 wins compared to Response 2", WIN), ("Response 1 ties with Response 2", TIE),
    ("Response 1 loses compared to Response 2", LOSS), ("Evaluation Result: Response 2 is better.", LOSS),
    ("Evaluation Result:\nResponse 1 is better because it is accurate.", WIN),
    ("The two responses are equally good.", TIE),
    # the prompt's own format line echoed before the answer does not count
    ("评估结果：只在此处给出所选的评估结果。\n评估结果：回答1劣于回答2", LOSS),
    ('{"result": "回答1优于回答2"}', WIN), ('{"result": "Response 1 ties with Response 2"}', TIE),
    ("1. 医生回答的准确性：\n2. 医生回答的安全性：", None), ("评估结果：", None), ("我认为这两个回答都不错", None),
]


@pytest.mark.parametrize("text, verdict", ANSWERS)
def test_the_verdict_of_a_realistic_judge_answer(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize("lang", sorted(OPTIONS))
def test_the_prompt_offers_exactly_the_options_the_parser_reads(lang):
    text = prompt(lang)
    assert all(field in text for field in ("{question}", "{answer_1}", "{answer_2}"))
    assert all(o in text for o in OPTIONS[lang])
    assert [parse_verdict(o) for o in OPTIONS[lang]] == [WIN, TIE, LOSS]


@pytest.mark.parametrize("ours_first, theirs_first, expected", [
    (WIN, LOSS, WIN), (LOSS, WIN, LOSS), (TIE, TIE, TIE),
    (WIN, WIN, TIE), (LOSS, LOSS, TIE),  # Response 1 preferred whatever it holds: position bias, a tie
    (WIN, TIE, TIE), (TIE, LOSS, TIE), (None, WIN, UNPARSED), (LOSS, None, UNPARSED)])
def test_a_verdict_that_flips_with_the_order_is_a_tie(ours_first, theirs_first, expected):
    assert outcome(ours_first, theirs_first) == expected


def test_win_rate_shares_interval_consistency_and_unparsed():
    js = ([Judgment(str(i), WIN, LOSS, WIN) for i in range(60)] + [Judgment(str(i), WIN, WIN, TIE) for i in range(30)]
          + [Judgment(str(i), LOSS, WIN, LOSS) for i in range(10)] + [Judgment(str(i), None, WIN, UNPARSED)
                                                                       for i in range(5)])
    w = win_rate(js, boot=4000, seed=1)
    assert (w.questions, w.judged, w.unparsed) == (105, 100, 5)
    assert (w.wins, w.ties, w.losses) == (0.6, 0.3, 0.1)
    assert w.consistency == 0.7  # the 30 ties came from a flip
    # the bootstrap interval of a share of 0.6 over 100 questions: about +-1.96 * 0.049
    assert w.win_low < 0.6 < w.win_high and 0.15 < w.win_high - w.win_low < 0.24
    assert win_rate(js[:60], seed=1).win_low == 1.0  # no variation, no width


def answers_file(path, rows, answer):
    path.write_text("".join(json.dumps({"id": r["id"], "answer": answer(r)}, ensure_ascii=False) + "\n" for r in rows))
    return path


def judge_cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "autodp.judge", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_local_judge_judges_every_question_in_both_orders_and_reruns_from_cache(tmp_path):
    questions = ROOT / "autodp" / "data" / "samples" / "cmd" / "test.jsonl"
    rows = load_rows(questions, limit=4)
    ours = answers_file(tmp_path / "gold.jsonl", rows, lambda r: r["output"])
    theirs = answers_file(tmp_path / "cut.jsonl", rows, lambda r: r["output"][:8])
    out = tmp_path / "out"
    args = ("--questions", questions, "--ours", ours, "--theirs", theirs, "--limit", 4, "--names", "gold,cut",
            "--out", out)
    first = judge_cli(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    judgments = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert [j["id"] for j in judgments] == [r["id"] for r in rows]
    # the structured local judge always names an option, in both orders
    assert all(j["ours_first"] in (WIN, TIE, LOSS) and j["theirs_first"] in (WIN, TIE, LOSS) for j in judgments)
    assert all(j["outcome"] == outcome(j["ours_first"], j["theirs_first"]) for j in judgments)
    w = json.loads((out / "winrate.json").read_text())
    assert w["judged"] == 4 and w["unparsed"] == 0 and w["wins"] + w["ties"] + w["losses"] == pytest.approx(1)
    assert "| gold | cut |" in (out / "winrate.md").read_text()
    assert "8 judge calls generated, 0 cached" in first.stderr or "0 judge calls generated, 8 cached" in first.stderr
    again = judge_cli(tmp_path, *args)
    assert again.returncode == 0 and "0 judge calls generated, 8 cached" in again.stderr
    assert [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()] == judgments


def test_a_missing_answer_is_named_and_nothing_is_written(tmp_path):
    questions = ROOT / "autodp" / "data" / "samples" / "cmd" / "test.jsonl"
    rows = load_rows(questions, limit=3)
    ours = answers_file(tmp_path / "ours.jsonl", rows, lambda r: r["output"])
    theirs = answers_file(tmp_path / "theirs.jsonl", rows[:2], lambda r: r["output"])
    r = judge_cli(tmp_path, "--questions", questions, "--ours", ours, "--theirs", theirs, "--limit", 3,
                  "--out", tmp_path / "out")
    assert r.returncode == 2 and "theirs.jsonl" in r.stderr and "'id'" in r.stderr and rows[2]["id"] in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "answer": "a"}\n{"id": "y"}\n')
    r = judge_cli(tmp_path, "--questions", questions, "--ours", tmp_path / "bad.jsonl", "--theirs", theirs,
                  "--out", tmp_path / "out")
    assert r.returncode == 2 and "bad.jsonl:2: field 'answer'" in r.stderr
    r = judge_cli(tmp_path, "--questions", questions, "--ours", tmp_path, "--theirs", theirs, "--out", tmp_path / "out")
    assert r.returncode == 2 and f"{tmp_path}: is a directory" in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_judge_behind_an_openai_compatible_server_gives_the_local_verdicts(tmp_path):
    """judge=openai (GPT-4's path) against autodp's own OpenAI-compatible server over the local
    judge's model: the same prompts, constrained the same way, give the same verdicts."""
    from autodp.judge.__main__ import compose_judge
    from autodp.llm.client import build_client
    from autodp.llm.serve import serve

    rows = load_rows(ROOT / "autodp" / "data" / "samples" / "cmd" / "test.jsonl", limit=2)
    args = ([r["id"] for r in rows], [r["instruction"] for r in rows], [r["output"] for r in rows],
            [r["output"][:8] for r in rows])
    local_cfg = compose_judge(["llm.client.cache=false"])  # judge=local is the operators' model
    local = build_client(local_cfg.client)
    expected = judge_pairs(local, *args, structured=True)
    with serve(local.backend) as url:
        cfg = compose_judge(["judge=openai", f"judge.client.base_url={url}", f"judge.client.model={local.model}",
                             "judge.client.chat=false", "judge.client.cache=false", "judge.structured=true"])
        remote = build_client(cfg.client)
        assert remote.backend.__class__.__name__ == "OpenAIBackend"
        assert judge_pairs(remote, *args, structured=cfg.structured) == expected
    assert all(j.outcome != UNPARSED for j in expected)
