"""The Data Generation Team: an LLM fills missing questions or answers, and writes new QA pairs
from k random rows of the data (self-instruct; paper Table 1, Data-Juicer
generate_qa_from_examples_mapper).

Generated text is used only when it is not empty, not cut off and in the data's language
(``llm_checks.failure``); new pairs that are near-duplicates of a row (MinHash Jaccard estimate
of character 5-grams >= 0.7, as ``minhash_dedup``) or of an earlier new pair are dropped.
Counts are in ``last_stats``.
"""
from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from datasketch import MinHash, MinHashLSH

from autodp.data.io import Row
from autodp.llm import Completion, LLMClient
from autodp.ops.base import register
from autodp.ops.cleaning import row_text, shingles
from autodp.ops.llm_checks import ECHO, FORMAT, echoes, failure
from autodp.ops.llm_op import LLMOperator, stable_sample
from autodp.ops.llm_prompts import fill_task, generate_task, split_pair, strip_label, texts
from autodp.strategy import Team

log = logging.getLogger(__name__)


def is_complete(row: Row) -> bool:
    """Has a question and an answer: usable as a shot."""
    return bool(row["instruction"].strip() and row["output"].strip())


def shots_of(row: Row) -> tuple[str, str]:
    return row["instruction"], row["output"]


def novel(existing: list[Row], candidates: list[Row], threshold: float = 0.7, n: int = 5,
          num_perm: int = 256, seed: int = 1) -> list[bool]:
    """For each candidate, in order: no existing row and no earlier kept candidate has an
    estimated Jaccard similarity >= ``threshold`` with it (text: ``row_text``)."""
    hashes = MinHash.bulk((shingles(row_text(r), n) for r in existing + candidates), num_perm=num_perm,
                          seed=seed, hashfunc=zlib.crc32)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i in range(len(existing)):
        lsh.insert(i, hashes[i], check_duplication=False)
    keep = []
    for i in range(len(existing), len(hashes)):
        # the estimate check drops LSH band false positives
        new = not any(hashes[i].jaccard(hashes[j]) >= threshold for j in lsh.query(hashes[i]))
        if new:
            lsh.insert(i, hashes[i], check_duplication=False)
        keep.append(new)
    return keep


class Fill(LLMOperator):
    """Write a row's missing question (from its answer) or answer (from its question), shown
    ``k`` random complete rows as examples."""

    team = Team.GENERATION
    missing: ClassVar[str]  # question | answer (names the prompt and the label)
    field: ClassVar[str]  # the row field to fill
    given: ClassVar[str]  # the row field it is written from

    def __init__(self, llm: Mapping | LLMClient, k: int = 3, **common: Any):
        super().__init__(llm, **common)
        self.k = k

    def eligible(self, row: Row) -> bool:
        return not row[self.field].strip() and bool(row[self.given].strip())

    def __call__(self, rows: list[Row]) -> list[Row]:
        idx = self.pick(rows)
        rejected = self.start_stats(len(rows), len(idx))
        out, filled = list(rows), 0
        if idx:  # no client (no model load) when there is nothing to do
            pool = [r for r in rows if is_complete(r)]
            chat, tasks = self.client.chat, []
            for i in idx:
                shots = [shots_of(pool[j]) for j in stable_sample(pool, self.k, f"{self.seed}/{rows[i]['id']}")]
                tasks.append(fill_task(self.missing, rows[i][self.given], shots, self.lang, chat))
            label = texts(self.lang).labels[self.missing]
            for i, completion in zip(idx, self.complete([t.prompt for t in tasks], tasks[0].stop)):
                text = strip_label(completion.text, label)
                reason = failure(text, completion, self.lang)
                if reason is not None:
                    rejected[reason] += 1
                else:
                    out[i] = {**rows[i], self.field: text}
                    filled += 1
        self.finish_stats(rejected, filled=filled)
        return out


@register("fill_missing_question")
class FillMissingQuestion(Fill):
    missing, field, given = "question", "instruction", "output"


@register("fill_missing_answer")
class FillMissingAnswer(Fill):
    missing, field, given = "answer", "output", "instruction"


@register("generate_qa_from_shots")
class GenerateQAFromShots(LLMOperator):
    """Add up to ``num_new`` QA pairs, each written after ``k`` random complete rows, when the
    input has at most ``max_input_rows`` rows (null: always); the artifact adds 2,000 pairs from 4
    shots to inputs of at most 1,000 rows. ``max_rows`` caps the pairs asked for. New rows get
    ``meta.generated_by`` and the ids of their shots. It changes no existing row, so ``only_ids``
    (PTS) does not apply: shots come from, and new pairs are checked against, every row."""

    team = Team.GENERATION
    counts = ("num_new", "max_input_rows", "max_rows")

    def __init__(self, llm: Mapping | LLMClient, num_new: int = 2000, max_input_rows: int | None = 1000, k: int = 3,
                 dedup_threshold: float = 0.7, **common: Any):
        super().__init__(llm, **common)
        self.num_new, self.max_input_rows, self.k, self.dedup_threshold = num_new, max_input_rows, k, dedup_threshold

    def eligible(self, row: Row) -> bool:
        return is_complete(row)

    def targets(self, rows: Sequence[Row]) -> list[bool]:
        return [self.eligible(r) for r in rows]

    def __call__(self, rows: list[Row]) -> list[Row]:
        pool = [r for r, t in zip(rows, self.targets(rows)) if t]
        too_many = self.max_input_rows is not None and len(rows) > self.max_input_rows
        n = 0 if too_many or not pool else self.cap(self.num_new, "generating", unit="pairs")
        if too_many:
            log.info("%s: skipped, %d input rows > max_input_rows=%d", self.name, len(rows), self.max_input_rows)
        rejected = self.start_stats(len(rows), n)
        if n == 0:
            self.finish_stats(rejected, near_duplicates=0, added=0)
            return list(rows)
        groups = [[pool[j] for j in stable_sample(pool, self.k, f"{self.seed}/{p}")] for p in range(n)]
        chat = self.client.chat
        tasks = [generate_task([shots_of(s) for s in group], self.lang, chat) for group in groups]
        candidates = []
        for group, completion in zip(groups, self.complete([t.prompt for t in tasks], tasks[0].stop)):
            pair, reason = self.check(completion)
            if pair is None:
                rejected[reason] += 1
            else:
                candidates.append(self.new_row(*pair, group))
        keep = novel(rows, candidates, self.dedup_threshold) if candidates else []
        added = [c for c, k in zip(candidates, keep) if k]
        self.finish_stats(rejected, near_duplicates=len(candidates) - len(added), added=len(added))
        return list(rows) + added

    def check(self, completion: Completion) -> tuple[tuple[str, str] | None, str | None]:
        """(question, answer) and None, or None and the reason the completion cannot be used."""
        pair = split_pair(completion.text, self.lang)
        if pair is None:
            return None, failure(completion.text, completion, self.lang) or FORMAT
        reason = failure(pair[0], completion, self.lang) or failure(pair[1], completion, self.lang)
        if reason is None and echoes(answer=pair[1], question=pair[0]):
            reason = ECHO
        return (None, reason) if reason else (pair, None)

    def new_row(self, question: str, answer: str, shots: list[Row]) -> Row:
        # named by content: unique, since an identical pair is a near-duplicate and dropped
        digest = hashlib.sha256(f"{question}\n{answer}".encode()).hexdigest()[:16]
        return {"id": f"{self.name}-{digest}", "instruction": question, "input": "", "output": answer,
                "meta": {"generated_by": self.name, "shots": [s["id"] for s in shots]}}
