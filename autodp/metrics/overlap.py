"""Reference metrics over characters (Chinese has no spaces to split words on): ROUGE-L F1 with
Google's rouge-score, sentence BLEU with sacrebleu's character tokenizer, per question, 0-100."""
from __future__ import annotations

from typing import Sequence

from autodp.metrics.base import Metric, register


class _Chars:
    """rouge-score's tokenizer interface; its default one drops every non-ASCII character."""

    def tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]


def rouge_l_char(answers: Sequence[str], references: Sequence[str]) -> list[float]:
    from rouge_score.rouge_scorer import RougeScorer  # imports nltk: only where a metric is computed

    scorer = RougeScorer(["rougeL"], tokenizer=_Chars())
    return [100 * scorer.score(ref, ans)["rougeL"].fmeasure for ans, ref in zip(answers, references, strict=True)]


def bleu_char(answers: Sequence[str], references: Sequence[str]) -> list[float]:
    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize="char", effective_order=True)  # effective order: short answers are not all 0
    return [bleu.sentence_score(ans, [ref]).score for ans, ref in zip(answers, references, strict=True)]


register(Metric("rouge_l_char", higher_is_better=True, needs="generations", per_question=rouge_l_char))
register(Metric("bleu_char", higher_is_better=True, needs="generations", per_question=bleu_char))
