"""F's weak labels: each rule is a small named check for one kind of noise really present in CMD
and cMedQA2 (see shared/data/README.md); a row is noisy when any rule fires."""
from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from autodp.accel.embed import prompt_text
from autodp.data.io import Row
from autodp.ops.cleaning import repetition_ratio, special_ratio

# Markup and contact rules look at question and answer; the others at the answer only: it is
# the fine-tuning target, while patients' typing habits in questions are part of the task.
Rule = Callable[[str, str], bool]  # (question, answer) -> noisy?
RULES: dict[str, Rule] = {}


def rule(fn: Rule) -> Rule:
    """Register ``fn`` in RULES under its name."""
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
