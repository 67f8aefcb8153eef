"""A judge's answer -> its verdict for Response 1: win, tie or loss (None when it names none).

The paper's judge picks one of three options (appendix 6.1 (3)); models write them in many
ways: the option verbatim, "Response 2 is better", 【平局】, after an "Evaluation Result:" line or
alone. The verdict is the first option named after the last result marker (the prompt's own
format line is not part of the answer), in Chinese or English.
"""
from __future__ import annotations

import re

WIN, TIE, LOSS = "win", "tie", "loss"
FLIP = {WIN: LOSS, TIE: TIE, LOSS: WIN}  # Response 1's verdict seen from Response 2

_R1 = r"(?:回答|回复|答案|医生)\s*(?:1|一|A)|response\s*1|answer\s*1"
_R2 = r"(?:回答|回复|答案|医生)\s*(?:2|二|B)|response\s*2|answer\s*2"
_BETTER = r"(?:优于|好于|胜过|胜出|获胜|胜|更好|更优|更佳|wins?|is\s+better|beats?|outperforms?)"
_WORSE = r"(?:劣于|差于|不如|输给|负|更差|loses?|is\s+worse)"
_SAME = r"(?:相当|持平|一样|打平|相同|差不多|不相上下)"
_PATTERNS = (
    (TIE, re.compile(rf"(?:{_R1})\s*(?:与|和|跟)\s*(?:{_R2})\s*{_SAME}|(?:{_R1})\s+ties?\s+with|"
                     rf"平局|不相上下|两者{_SAME}|\bties?\b|\bequal(?:ly)?\b|\bdraw\b", re.I)),
    (WIN, re.compile(rf"(?:{_R1})[^。，,.;；\n]{{0,12}}?{_BETTER}|(?:{_R2})[^。，,.;；\n]{{0,12}}?{_WORSE}", re.I)),
    (LOSS, re.compile(rf"(?:{_R1})[^。，,.;；\n]{{0,12}}?{_WORSE}|(?:{_R2})[^。，,.;；\n]{{0,12}}?{_BETTER}", re.I)),
)
_MARKER = re.compile(r"评估结果\s*[:：]|evaluation\s+result\s*[:：]", re.I)


def parse_verdict(text: str) -> str | None:
    """Response 1's verdict in a judge's answer, or None when it names none of the three."""
    markers = list(_MARKER.finditer(text))
    tail = text[markers[-1].end():] if markers and text[markers[-1].end():].strip() else text
    found = [(m.start(), verdict) for verdict, pattern in _PATTERNS if (m := pattern.search(tail))]
    return min(found)[1] if found else None
