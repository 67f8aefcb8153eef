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
_THINK = re.compile(r"<think>.*?(</think>|$)", re.S)
_HEADER = re.compile(r"#+\s*combination\s*\[?\s*(\w*)\s*\]?\s*#*(.*)$", re.I)
_REASONS = re.compile(r"^\s*#+\s*reasons?\b", re.I)
_BEST = re.compile(r"\[?\s*best\s+team\s*\]?\s*:?", re.I)
_NO_PROCESSING = re.compile(r"no\s+processing\s+required", re.I)
_BULLET = re.compile(r"^\s*(?:[-•+]|\d+\s*[.)])\s*")
_SEPARATOR = re.compile(r"->|=>|→|⟶|>|,|;")


def _clean(text: str) -> str:
    return _THINK.sub("", text).translate(_FULLWIDTH).replace("*", "").replace("`", "")


def _combination(name: str, text: str, rules: Rules) -> Strategy:
    text = re.sub(r"\([^)]*\)", "", _BULLET.sub("", text, count=1)).strip().rstrip(".")
    parts = [p.strip() for p in _SEPARATOR.split(text) if p.strip()]
    if not parts:
        raise ParseError(f"Combination[{name}] lists no team")
    if len(parts) > rules.max_teams:
        raise ParseError(f"Combination[{name}] has {len(parts)} teams; at most {rules.max_teams} are allowed")
    try:
        return Strategy.parse(", ".join(parts))
    except StrategyError as e:
        raise ParseError(f"Combination[{name}]: {e}") from None


def _next_line(lines: list[str], i: int) -> str:
    """The first non-empty line after line i that is not another header."""
    line = next((x for x in lines[i + 1:] if x.strip()), "")
    return "" if _HEADER.search(line) else line


def _blocks(lines: list[str]) -> list[tuple[str, str, bool]]:
    """(name, team line, marked Best Team) per ###Combination[k]### header; a marker alone on
    the line before a header marks that block."""
    blocks, pending = [], False
    for i, line in enumerate(lines):
        m = _HEADER.search(line)
        if not m:
            pending = pending or bool(_BEST.search(line) and not _BEST.sub("", line).strip(" :-"))
            continue
        name, body = m.group(1) or str(len(blocks) + 1), _BEST.sub("", m.group(2)).strip(" :")
        best, pending = pending or bool(_BEST.search(line)), False
        if not body:
            body = _next_line(lines, i)
            best = best or bool(_BEST.search(body))
        blocks.append((name, _BEST.sub("", body), best))
    return blocks


def _bare_best(lines: list[str]) -> list[tuple[str, str, bool]]:
    """A final answer without headers: '[Best Team]: Team, Team', or the marker over a team line."""
    for i, line in enumerate(lines):
        if _BEST.search(line):
            body = _BEST.sub("", line).strip(" :-") or _next_line(lines, i)
            return [("Best Team", body, True)]
    return []


def parse_text(text: str, rules: Rules) -> Answer:
    """Parse '###Combination[k]###' blocks, each followed by '- Team, Team', plus the stop markers."""
    lines = _clean(text).splitlines()
    end = next((i for i, x in enumerate(lines) if _REASONS.match(x)), len(lines))
    lines = lines[:end]  # reasons are prose that may name teams and markers
    if _NO_PROCESSING.search("\n".join(lines)):
        return validate([], "no_processing", None, rules)
    blocks = _blocks(lines) or _bare_best(lines)
    if not blocks:
        raise ParseError("no ###Combination[k]### block found; write each combination as a line "
                         "'###Combination[1]###' followed by a line '- Data Cleaning Team, Data Selection Team'")
    strategies = [_combination(name, body, rules) for name, body, _ in blocks]
    best = list(dict.fromkeys(s for s, (_, _, marked) in zip(strategies, blocks) if marked))
    if len(best) > 1:
        raise ParseError(f"{len(best)} combinations are marked [Best Team]; mark exactly one as the final choice")
    return validate(strategies, "best_team" if best else "continue", best[0] if best else None, rules)


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
