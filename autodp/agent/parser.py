"""Read the agent's answer: the paper's free format (appendix 6.1) or a JSON format.

Both formats end in the same `validate`, so a model is held to the same rules whichever way it
answers. Every ParseError message is written to be sent back to the model as it stands.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from autodp.proposal import DECISIONS, Rules
from autodp.strategy import NO_PROCESSING_LABEL, Strategy, StrategyError, strategy_space


class ParseError(ValueError):
    """An answer that cannot be used."""


@dataclass(frozen=True)
class Answer:
    strategies: list[Strategy]  # as listed, duplicates dropped
    decision: str
    best: Strategy | None  # the final choice; Strategy(()) for no_processing
    duplicates: int = 0


def validate(strategies: list[Strategy], decision: str, best: Strategy | None, rules: Rules) -> Answer:
    """Apply the round's rules; with best_team and no explicit best, the first combination is it."""
    if decision not in DECISIONS:
        raise ParseError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    if decision != "continue" and not rules.can_stop:
        raise ParseError("it is too early to stop the iteration: propose combinations to evaluate")
    unique = list(dict.fromkeys(strategies))
    for s in unique:
        if s.is_none:
            raise ParseError(f"'{NO_PROCESSING_LABEL}' is not a combination of teams; "
                             "list teams, or use it only to stop the iteration")
        if len(s.teams) > rules.max_teams:
            raise ParseError(f"'{s.label}' has {len(s.teams)} teams; at most {rules.max_teams} are allowed")
        missing = [t.label for t in s.teams if t not in rules.teams]
        if missing:
            raise ParseError(f"'{s.label}' uses {', '.join(missing)}, which is not available; "
                             f"available teams: {', '.join(t.label for t in rules.teams)}")
    if decision == "no_processing":
        return Answer(unique, decision, Strategy(()), len(strategies) - len(unique))
    if not unique:
        raise ParseError("no combination given")
    if len(unique) > rules.max_strategies:
        raise ParseError(f"{len(unique)} combinations given; at most {rules.max_strategies} are allowed per round")
    if decision == "best_team":
        best = best or unique[0]
        if rules.evaluated is not None and best not in rules.evaluated:
            raise ParseError(f"the Best Team '{best.label}' has no feedback score yet; "
                             "choose an evaluated combination as Best Team, or continue")
    else:
        best = None
    return Answer(unique, decision, best, len(strategies) - len(unique))


# --- the paper's free format ---------------------------------------------------------------

_FULLWIDTH = str.maketrans({"，": ",", "、": ",", "；": ";", "：": ":", "【": "[", "】": "]",
                            "［": "[", "］": "]", "（": "(", "）": ")", "＃": "#", "。": "."})
# The paper's markers and team names as models answering in Chinese write them, in English
# (applied in order: the markers contain words that the later patterns would take apart).
_CHINESE = [(re.compile(p), en) for p, en in (
    (r"最[佳优](?:团队|组合|方案)", "Best Team"),
    (r"原始数据(?:无需|不需要|不必)(?:进行)?(?:任何)?处理", "No Processing Required for Original Data"),
    (r"组合", "Combination"),
    (r"(?:数据)?(?:清洗|清理)(?:团队|小组)?", " Data Cleaning Team "),
    (r"(?:数据)?优化(?:团队|小组)?", " Data Optimization Team "),
    (r"(?:数据)?生成(?:团队|小组)?", " Data Generation Team "),
    (r"(?:数据)?(?:选择|筛选)(?:团队|小组)?", " Data Selection Team "),
)]
_THINK = re.compile(r"<think>.*?(</think>|$)", re.S)
_HEADER = re.compile(r"#+\s*combination\s*\[?\s*(\w*)\s*\]?\s*#*(.*)$", re.I)
_REASONS = re.compile(r"^\s*#+\s*(?:reasons?\b|[^#]*(?:理由|原因))", re.I)
_BEST = re.compile(r"\[?\s*best\s+team\s*\]?\s*:?", re.I)
_NO_PROCESSING = re.compile(r"no\s+processing\s+required", re.I)
_BULLET = re.compile(r"^\s*(?:[-•+]|\d+\s*[.)])\s*")
_SEPARATOR = re.compile(r"->|=>|→|⟶|>|,|;|以及|然后|和|与|及|再")
_STEP_WORD = re.compile(r"^(?:首先|先|接着|最后)\s*")  # "first", "next", "finally" before a team


def _clean(text: str) -> str:
    text = _THINK.sub("", text).translate(_FULLWIDTH).replace("*", "").replace("`", "")
    for pattern, english in _CHINESE:
        text = pattern.sub(english, text)
    return text


def _combination(name: str, text: str, rules: Rules) -> Strategy:
    text = re.sub(r"\([^)]*\)", "", _BULLET.sub("", text, count=1)).strip().rstrip(".")
    parts = [_STEP_WORD.sub("", p.strip()) for p in _SEPARATOR.split(text) if p.strip()]
    if not parts:
        raise ParseError(f"Combination[{name}] lists no team")
    if len(parts) > rules.max_teams:
        raise ParseError(f"Combination[{name}] has {len(parts)} teams; at most {rules.max_teams} are allowed")
    try:
        return Strategy.parse(", ".join(parts))
    except StrategyError as e:
        raise ParseError(f"Combination[{name}]: {e}") from None


def _marker_alone(line: str) -> bool:
    return bool(_BEST.search(line)) and not _BEST.sub("", line).strip(" :-.")


def _team_lines(lines: list[str], i: int) -> tuple[list[str], int]:
    """The team line after line i (the first non-empty one) and the list lines right below it,
    each a step of a numbered or bulleted list of teams; and the index after them."""
    j = next((k for k in range(i + 1, len(lines)) if lines[k].strip()), len(lines))
    if j == len(lines) or _HEADER.search(lines[j]) or _marker_alone(lines[j]):
        return [], j
    body, j = [lines[j]], j + 1
    while j < len(lines) and _BULLET.match(lines[j]) and not _HEADER.search(lines[j]) and not _marker_alone(lines[j]):
        body.append(lines[j])
        j += 1
    return body, j


def _joined(body: list[str]) -> str:
    return ", ".join(_BEST.sub("", _BULLET.sub("", line, count=1)).strip(" :") for line in body)


def _blocks(lines: list[str]) -> tuple[list[tuple[str, str, bool]], str | None]:
    """(name, team text, marked Best Team) per ###Combination[k]### header, and the team text a
    [Best Team] marker names outside the blocks (None). A marker marks the block on its line; a
    marker alone marks the block whose header is the next line, else the block whose team lines
    end right above it, else names the team line below it, else marks the block whose header
    follows, else (at the end) the last block."""
    blocks: list[tuple[str, str, bool]] = []
    named, pending, i, last_end = None, False, 0, -1
    while i < len(lines):
        line = lines[i]
        m = _HEADER.search(line)
        if m:
            name, inline = m.group(1) or str(len(blocks) + 1), _BEST.sub("", m.group(2)).strip(" :")
            body, i = ([inline], i + 1) if inline else _team_lines(lines, i)
            best = pending or bool(_BEST.search(line)) or any(_BEST.search(x) for x in body)
            blocks.append((name, _joined(body), best))
            pending, last_end = False, i
            continue
        marker = _BEST.search(line)
        rest = line[marker.end():].strip(" :-.") if marker else ""
        # a marker that leads its line, or a bracketed one before team names; else prose
        if marker and (not _BULLET.sub("", line[:marker.start()]).strip(" :-") or ("[" in marker.group(0) and rest)):
            after, j = _team_lines(lines, i) if not rest else ([rest], i + 1)
            if not rest and i + 1 < len(lines) and _HEADER.search(lines[i + 1]):
                pending, i = True, i + 1
                continue
            if not rest and blocks and i == last_end:
                name, body, _ = blocks[-1]
                blocks[-1] = (name, body, True)
            elif after:
                named = _joined(after)
            elif j < len(lines):  # a header follows
                pending = True
            elif blocks:
                name, body, _ = blocks[-1]
                blocks[-1] = (name, body, True)
            i = max(j, i + 1)
            continue
        i += 1
    return blocks, named


def parse_text(text: str, rules: Rules) -> Answer:
    """Parse '###Combination[k]###' blocks, each followed by '- Team, Team' (or a list of teams,
    one a line), plus the stop markers; markers and team names in Chinese are read too."""
    lines = _clean(text).splitlines()
    end = next((i for i, x in enumerate(lines) if _REASONS.match(x)), len(lines))
    lines = lines[:end]  # reasons are prose that may name teams and markers
    if _NO_PROCESSING.search("\n".join(lines)):
        return validate([], "no_processing", None, rules)
    blocks, named = _blocks(lines)
    if not blocks and named is None:
        raise ParseError("no ###Combination[k]### block found; write each combination as a line "
                         "'###Combination[1]###' followed by a line '- Data Cleaning Team, Data Selection Team'")
    strategies = [_combination(name, body, rules) for name, body, _ in blocks]
    best = list(dict.fromkeys(s for s, (_, _, marked) in zip(strategies, blocks) if marked))
    if named is not None:
        best = list(dict.fromkeys([*best, _combination("Best Team", named, rules)]))
    if len(best) > 1:
        raise ParseError(f"{len(best)} combinations are marked [Best Team]; mark exactly one as the final choice")
    return validate(strategies or best, "best_team" if best else "continue", best[0] if best else None, rules)


# --- JSON, for structured output -----------------------------------------------------------

def answer_schema(rules: Rules) -> dict:
    """JSON schema whose enum holds every valid combination, so a constrained decoder cannot write
    an invalid one while the model still chooses teams and order."""
    labels = [s.label for s in strategy_space(rules.teams) if not s.is_none and len(s.teams) <= rules.max_teams]
    return {
        "type": "object",
        "properties": {
            "combinations": {"type": "array", "items": {"type": "string", "enum": labels},
                             "minItems": 1, "maxItems": rules.max_strategies},
            "decision": {"type": "string", "enum": list(DECISIONS) if rules.can_stop else ["continue"]},
        },
        "required": ["combinations", "decision"],
        "additionalProperties": False,
    }


def parse_json(text: str, rules: Rules) -> Answer:
    """Parse {"combinations": [label, ...], "decision": ...}; text around the object is ignored."""
    text = _THINK.sub("", text)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ParseError('no JSON object found; answer with {"combinations": [...], "decision": "continue"}')
    try:
        obj = json.loads(text[start:end + 1])
    except json.JSONDecodeError as e:
        raise ParseError(f"invalid JSON: {e.msg} at character {e.pos}") from None
    if not isinstance(obj, dict):
        raise ParseError("the answer must be a JSON object")
    combos, decision = obj.get("combinations"), obj.get("decision")
    if not isinstance(combos, list) or not all(isinstance(c, str) for c in combos):
        raise ParseError('"combinations" must be a list of strings such as "Data Cleaning Team, Data Selection Team"')
    if not isinstance(decision, str):
        raise ParseError(f'"decision" must be one of {", ".join(DECISIONS)}')
    strategies = []
    for i, c in enumerate(combos, 1):
        try:
            strategies.append(Strategy.parse(c))
        except StrategyError as e:
            raise ParseError(f"combination {i} ({c!r}): {e}") from None
    return validate(strategies, decision, None, rules)
