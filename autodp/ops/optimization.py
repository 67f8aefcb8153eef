"""The Data Optimization Team: an LLM rewrites the question, the answer, or both (paper Table 1).

The question is ``instruction`` (``input``, extra context, is left alone), the answer ``output``.
A rewrite is used only when it passes every check of ``llm_checks.failure``: not empty, not cut
off, in the data's language, and, with ``length_tolerance`` t (the artifact's 0.1), a size
within (1 +- t) of the original's; null turns the length check off. A rejected row keeps its
original text, and the reason is counted in ``last_stats``.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from autodp.data.io import Row
from autodp.llm import Completion, LLMClient
from autodp.ops.base import register
from autodp.ops.llm_checks import FORMAT, failure, size
from autodp.ops.llm_op import LLMOperator
from autodp.ops.llm_prompts import Task, rewrite_qa_task, rewrite_task, split_pair, strip_label, texts
from autodp.strategy import Team


class Rewrite(LLMOperator):
    team = Team.OPTIMIZATION
    fields: ClassVar[tuple[str, ...]]  # the row fields the rewrite replaces

    def __init__(self, llm: Mapping | LLMClient, length_tolerance: float | None = 0.1, **common: Any):
        if length_tolerance is not None and length_tolerance < 0:
            raise ValueError(f"length_tolerance must be >= 0 or null, got {length_tolerance}")
        super().__init__(llm, **common)
        self.length_tolerance = length_tolerance

    def eligible(self, row: Row) -> bool:
        return all(row[f].strip() for f in self.fields)

    @property
    def asked_tolerance(self) -> float:
        """The tolerance the prompt states; without a length check, still the artifact's 10%."""
        return 0.1 if self.length_tolerance is None else self.length_tolerance

    @abstractmethod
    def task(self, row: Row, chat: bool) -> Task:
        ...

    @abstractmethod
    def parse(self, text: str) -> dict[str, str] | None:
        """The new field values in a model's answer; None when it lacks the expected format."""

    def __call__(self, rows: list[Row]) -> list[Row]:
        idx = self.pick(rows)
        rejected = self.start_stats(len(rows), len(idx))
        out, rewritten, unchanged = list(rows), 0, 0
        if idx:  # no client (no model load) when there is nothing to do
            tasks = [self.task(rows[i], self.client.chat) for i in idx]
            # room for the longest acceptable output (twice the original without a length check)
            growth = 1 + (1.0 if self.length_tolerance is None else self.length_tolerance)
            budgets = [self.budget(round(growth * sum(size(rows[i][f]) for f in self.fields))) for i in idx]
            for i, completion in zip(idx, self.complete([t.prompt for t in tasks], tasks[0].stop, budgets)):
                new, reason = self.check(rows[i], completion)
                if reason is not None:
                    rejected[reason] += 1
                elif all(new[f] == rows[i][f] for f in self.fields):
                    unchanged += 1
                else:
                    out[i] = {**rows[i], **new}
                    rewritten += 1
        self.finish_stats(rejected, rewritten=rewritten, unchanged=unchanged)
        return out

    def check(self, row: Row, completion: Completion) -> tuple[dict[str, str], str | None]:
        """The new values and None, or {} and the reason they cannot be used."""
        parts = self.parse(completion.text)
        if parts is None:
            return {}, failure(completion.text, completion, self.lang) or FORMAT
        for field, text in parts.items():
            reason = failure(text, completion, self.lang, row[field], self.length_tolerance)
            if reason is not None:
                return {}, reason
        return parts, None


class RewriteOne(Rewrite):
    kind: ClassVar[str]  # question | answer

    def task(self, row: Row, chat: bool) -> Task:
        return rewrite_task(self.kind, row[self.fields[0]], self.lang, self.asked_tolerance, chat)

    def parse(self, text: str) -> dict[str, str] | None:
        return {self.fields[0]: strip_label(text, texts(self.lang).labels["rewrite"])}


@register("optimize_question")
class OptimizeQuestion(RewriteOne):
    """Rewrite the question (Data-Juicer optimize_query_mapper)."""
    fields, kind = ("instruction",), "question"


@register("optimize_answer")
class OptimizeAnswer(RewriteOne):
    """Rewrite the answer (Data-Juicer optimize_response_mapper)."""
    fields, kind = ("output",), "answer"


@register("optimize_qa")
class OptimizeQA(Rewrite):
    """Rewrite question and answer in one call (Data-Juicer optimize_qa_mapper); both must pass,
    or the row keeps both originals."""
    fields = ("instruction", "output")

    def task(self, row: Row, chat: bool) -> Task:
        return rewrite_qa_task(row["instruction"], row["output"], self.lang, self.asked_tolerance, chat)

    def parse(self, text: str) -> dict[str, str] | None:
        pair = split_pair(text, self.lang)
        return None if pair is None else {"instruction": pair[0], "output": pair[1]}
