"""The paper's two agent prompts (appendix 6.1), filled in with the whole search history."""
from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

from autodp.proposal import Feedback, RoundFeedback, Rules

PROMPTS = Path(__file__).parent / "prompts"
_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}

_STOP_JSON = ('"continue" to have these combinations evaluated; "best_team" to stop the iteration, '
              'with the final choice (【Best Team】) as the first combination; "no_processing" to stop '
              'because the original data requires no processing (【No Processing Required for Original Data】).')
_NO_STOP_JSON = '"continue" (it is too early to stop the iteration).'
_NO_STOP_TEXT = "It is too early to stop the iteration: propose combinations to evaluate."


@cache
def _template(name: str) -> Template:
    return Template((PROMPTS / f"{name}.txt").read_text(encoding="utf-8"))


FEEDBACK = ("paper", "with_noise")


def _score(f: Feedback, mode: str) -> str:
    if f.score is None:
        return f"failed: {f.error or 'unknown error'}"
    if mode == "paper" or f.se is None:
        return f"{f.score:.4f}"
    verdict = "better than the original data" if f.beyond_noise else "within noise of the original data"
    return f"{f.score:.4f} ± {f.se:.4f} ({verdict})"


def format_feedback(history: list[RoundFeedback], mode: str = "paper") -> str:
    """Every round, every combination, with its score s_k to 4 decimals or why it failed;
    ``with_noise`` adds the standard error and whether s_k is beyond noise."""
    if mode not in FEEDBACK:
        raise ValueError(f"agent.feedback must be one of {FEEDBACK}, not {mode!r}")
    blocks = []
    for r in history:
        blocks.append(f"Round {r.round}:")
        for k, f in enumerate(r.results, 1):
            blocks.append(f"{k}.###Combination[{k}]###\n- {f.strategy.label}\nFeedback Score: {_score(f, mode)}")
    return "\n\n".join(blocks)


def _rounds(history: list[RoundFeedback]) -> str:
    nums = [r.round for r in history]
    return f"Round {nums[0]}" if len(nums) == 1 else f"Rounds {nums[0]}-{nums[-1]}"


def render_prompt(round: int, history: list[RoundFeedback], rules: Rules, structured: bool,
                  feedback: str = "paper", note: str | None = None) -> str:
    """The initial prompt for round 1 (or an empty history), the iterative prompt afterwards;
    ``note`` (the search's, e.g. that every proposal was evaluated already) goes last."""
    return _render(round, history, rules, structured, feedback) + (f"\n\n{note}" if note else "")


def _render(round: int, history: list[RoundFeedback], rules: Rules, structured: bool, feedback: str) -> str:
    teams = ", ".join(t.label for t in rules.teams)
    max_strategies = _WORDS.get(rules.max_strategies, str(rules.max_strategies))
    if structured:
        stop_rule = _STOP_JSON if rules.can_stop else _NO_STOP_JSON
        output_format = _template("format_json").substitute(
            max_strategies=rules.max_strategies, teams=teams, stop_rule=stop_rule)
    else:
        stop_rule = "" if rules.can_stop or not history else _NO_STOP_TEXT
        output_format = _template("format_text").substitute(teams=teams, stop_rule=stop_rule).rstrip()
    task = _template("task").template.strip()
    if not history:
        return _template("initial").substitute(
            task=task, output_format=output_format, round=round, max_strategies=max_strategies)
    return _template("iterative").substitute(
        task=task, output_format=output_format, round=round,
        feedback=format_feedback(history, feedback), feedback_rounds=_rounds(history))
