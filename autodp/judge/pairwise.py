"""Pairwise judging with the paper's prompt (appendix 6.1 (3)), each pair in both orders.

Judges prefer a position (MT-bench, arXiv 2306.05685): every question is judged once with our
answer as Response 1 and once with it as Response 2. Two verdicts that agree are the outcome; a
verdict that flips with the order is a tie (MT-bench's convention); an answer that names no option
makes the question unparsed, counted and left out of the win/tie/loss shares. The judge is any
backend of the one LLM client, so its answers are cached: a killed run re-judges nothing.
``structured`` constrains the answer to the three options (a JSON schema, as for the agent): a
small local judge does not follow the format otherwise; a large one does not need it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Mapping, Sequence

from autodp.judge.verdict import FLIP, parse_verdict
from autodp.llm.client import LLMClient, in_chunks

log = logging.getLogger(__name__)
LANGS = ("zh", "en")
CHUNK = 16  # questions per judge call: the progress bar's step
UNPARSED = "unparsed"
# The paper's three options, Response 1's view, in each prompt's language (prompts/<lang>.txt).
OPTIONS = {"zh": ("回答1优于回答2", "回答1与回答2相当", "回答1劣于回答2"),
           "en": ("Response 1 wins compared to Response 2", "Response 1 ties with Response 2",
                  "Response 1 loses compared to Response 2")}


@dataclass(frozen=True)
class Judgment:
    id: str
    ours_first: str | None    # Response 1's verdict with our answer as Response 1
    theirs_first: str | None  # Response 1's verdict with their answer as Response 1
    outcome: str              # ours: win | tie | loss, or unparsed

    @property
    def consistent(self) -> bool | None:
        """The two orders agree; None when either verdict is missing."""
        if self.ours_first is None or self.theirs_first is None:
            return None
        return self.ours_first == FLIP[self.theirs_first]

    def as_dict(self) -> dict:
        return {**asdict(self), "consistent": self.consistent}


def prompt(lang: str) -> str:
    if lang not in LANGS:
        raise ValueError(f"judge language must be one of {LANGS}, not {lang!r}")
    return resources.files("autodp.judge").joinpath("prompts", f"{lang}.txt").read_text(encoding="utf-8")


def outcome(ours_first: str | None, theirs_first: str | None) -> str:
    if ours_first is None or theirs_first is None:
        return UNPARSED
    return ours_first if ours_first == FLIP[theirs_first] else "tie"


def judge_pairs(client: LLMClient, ids: Sequence[str], questions: Sequence[str], ours: Sequence[str],
                theirs: Sequence[str], *, lang: str = "zh", seed: int = 0, max_tokens: int = 48,
                structured: bool = False) -> list[Judgment]:
    """One Judgment per question; 2 judge calls each (greedy, so a verdict is reproducible)."""
    if not len(ids) == len(questions) == len(ours) == len(theirs):
        raise ValueError(f"{len(ids)} ids, {len(questions)} questions, {len(ours)} and {len(theirs)} answers")
    template = prompt(lang)
    prompts = [template.format(question=q, answer_1=a, answer_2=b)
               for q, x, y in zip(questions, ours, theirs) for a, b in ((x, y), (y, x))]
    if client.chat:
        prompts = [[{"role": "user", "content": p}] for p in prompts]
    schema = {"type": "object", "properties": {"result": {"enum": list(OPTIONS[lang])}},
              "required": ["result"]} if structured else None
    answers = client.generate(prompts, schema=schema, seed=seed, temperature=0.0, max_tokens=max_tokens)
    verdicts = [parse_verdict(t) for t in answers]
    pairs = zip(verdicts[0::2], verdicts[1::2])
    return [Judgment(i, a, b, outcome(a, b)) for i, (a, b) in zip(ids, pairs)]


def judge_questions(client: LLMClient, rows: Sequence[Mapping[str, Any]], ours: Mapping[str, str],
                    theirs: Mapping[str, str], cfg: Mapping[str, Any], seed: int = 0) -> list[Judgment]:
    """``judge_pairs`` over dataset rows (their ``id``, ``instruction`` and ``input``) with the
    answers keyed by id, in chunks with a progress bar; ``cfg`` is conf/judge's."""
    def judge(chunk: Sequence[Mapping[str, Any]]) -> list[Judgment]:
        ids = [r["id"] for r in chunk]
        return judge_pairs(client, ids, [r["instruction"] + r["input"] for r in chunk], [ours[i] for i in ids],
                           [theirs[i] for i in ids], lang=cfg["lang"], seed=seed, max_tokens=cfg["max_tokens"],
                           structured=cfg["structured"])

    t0 = time.perf_counter()
    judgments, calls = in_chunks(client, rows, judge, "judge", CHUNK)
    log.info("%d questions judged in both orders in %.1f s (%d judge calls generated, %d cached)", len(rows),
             time.perf_counter() - t0, calls["generated"], calls["cached"])
    return judgments
