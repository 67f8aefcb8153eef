"""Checks on an LLM's output before it replaces or joins the data; each names why it fails.

A failed output is never used: the row keeps its original text and the reason is counted.
"""
from __future__ import annotations

import re

from autodp.llm import Completion

EMPTY, CUT_OFF, LANGUAGE, LENGTH = "empty", "cut_off", "language", "length"
FORMAT = "format"  # no answer label where a question and an answer were asked for
ECHO = "echo"  # a generated answer that only repeats its question (a small model's habit)
REASONS = (EMPTY, CUT_OFF, LANGUAGE, LENGTH, FORMAT, ECHO)

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")


def language(text: str) -> str | None:
    """"zh" when CJK ideographs are at least as many as Latin words, else "en"; None with
    neither. Words, not letters: one ideograph carries about a word, so drug names and units
    ("阿莫西林 amoxicillin 0.5g") leave a Chinese text Chinese."""
    cjk, words = len(_CJK.findall(text)), len(_LATIN_WORD.findall(text))
    if cjk + words == 0:
        return None
    return "zh" if cjk >= words else "en"


def squeeze(text: str) -> str:
    """The text without whitespace: spacing is no content, and Chinese has none."""
    return "".join(text.split())


def size(text: str) -> int:
    return len(squeeze(text))


def echoes(answer: str, question: str) -> bool:
    """The answer says nothing its question does not: it is part of the question."""
    return squeeze(answer) in squeeze(question)


def failure(text: str, completion: Completion, lang: str, original: str | None = None,
            tolerance: float | None = None) -> str | None:
    """Why ``text`` (the part of ``completion`` to use) is unusable, or None when it is fine.

    In this order: empty; cut off (the model hit its token budget); not in ``lang``; and, given
    an ``original`` and a ``tolerance``, a size off the original's by more than ``tolerance``.
    """
    if not text.strip():
        return EMPTY
    if completion.cut_off:
        return CUT_OFF
    if language(text) != lang:
        return LANGUAGE
    if original is not None and tolerance is not None and abs(size(text) - size(original)) > tolerance * size(original):
        return LENGTH
    return None
