"""What the LLM operators (Optimization and Generation teams) share: the client, which rows they
work on, the cap on LLM work, and the counts they report.

Restricting an operator to some rows: pass ``only_ids`` (or set ``op.only_ids``) to the ids of
the rows it may change, e.g. the rows a screening model flags as noisy (PTS); ``targets(rows)``
says which rows it would work on. Other rows pass through unchanged. ``max_rows`` then caps the
LLM calls: a seeded random sample of the targets is processed, and the log says so.

Every random choice of rows (which rows to process, which rows are shots) is a ``stable_sample``:
a row's chance depends on its id and the seed only, not on which other rows are present. Two
strategies that reach an operator with different rows therefore still pick the rows they share,
with the same shots, so their prompts, and the LLM's cached answers, are shared too.
"""
from __future__ import annotations

import logging
import math
import zlib
import time
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from autodp.data.io import Row
from autodp.llm import Completion, LLMClient, Prompt, shared_client
from autodp.ops.base import Operator
from autodp.ops.llm_checks import REASONS

log = logging.getLogger(__name__)


def stable_sample(rows: Sequence[Row], n: int, salt: str) -> list[int]:
    """Indices, in row order, of the ``n`` rows whose seeded hash of their id is smallest."""
    rank = sorted(range(len(rows)), key=lambda i: (zlib.crc32(f"{salt}/{rows[i]['id']}".encode()), i))
    return sorted(rank[:n])


class LLMOperator(Operator):
    """Base of the operators that call an LLM.

    ``llm``: a ``conf/llm`` client mapping (turned into one client per process) or a client.
    ``lang``: the data's language; prompts are written in it and outputs must be in it.
    ``fraction``: process a seeded sample of this share of the rows that have work (null: all),
    so that on a CPU the LLM work stays proportional to the data's size and to what PTS leaves
    (a 20% DPS sample costs a fifth). ``max_rows``: at most this many LLM calls per run on top
    (null: no cap). ``tokens_per_char``: an
    upper bound of the model's tokens per character, which turns a length limit in characters
    into a token budget. ``temperature``, ``top_p``, ``max_tokens``: override the client's
    defaults. ``seed``: sampling and every random choice of the operator. ``only_ids``: the ids
    of the rows it may work on (null: all), see the module's docstring.
    """

    counts = ("max_rows",)

    def __init__(self, llm: Mapping | LLMClient, lang: str = "zh", fraction: float | None = None,
                 max_rows: int | None = None, tokens_per_char: float = 2.0, temperature: float | None = None, top_p: float | None = None,
                 max_tokens: int | None = None, seed: int = 0, only_ids: Iterable[str] | None = None):
        if max_rows is not None and max_rows < 0:
            raise ValueError(f"max_rows must be >= 0 or null, got {max_rows}")
        if fraction is not None and not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1] or null, got {fraction}")
        self.fraction = fraction
        self.llm, self.lang, self.max_rows, self.tokens_per_char = llm, lang, max_rows, tokens_per_char
        self.temperature, self.top_p, self.max_tokens, self.seed = temperature, top_p, max_tokens, seed
        self.only_ids = None if only_ids is None else sorted(only_ids)
        self.last_stats: dict[str, Any] = {}  # counts of the last run; never any text

    @property
    def client(self) -> LLMClient:
        return self.llm if isinstance(self.llm, LLMClient) else shared_client(self.llm)

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in super().params().items() if k != "last_stats"}

    @abstractmethod
    def eligible(self, row: Row) -> bool:
        """Whether this operator has work on the row (e.g. a missing answer to fill)."""

    def targets(self, rows: Sequence[Row]) -> list[bool]:
        allowed = None if self.only_ids is None else set(self.only_ids)
        return [self.eligible(r) and (allowed is None or r["id"] in allowed) for r in rows]

    def work(self, total: int) -> int:
        """How many of ``total`` units of LLM work to do under ``fraction`` and ``max_rows``."""
        n = total if self.fraction is None else math.ceil(self.fraction * total)
        return n if self.max_rows is None else min(n, self.max_rows)

    def cap(self, total: int, what: str, unit: str = "rows") -> int:
        """``work(total)``, logged when it is less than ``total``."""
        n = self.work(total)
        if n < total:
            log.info("%s: %s %d of %d %s (fraction=%s, max_rows=%s)", self.name, what, n, total, unit,
                     self.fraction, self.max_rows)
        return n

    def pick(self, rows: Sequence[Row]) -> list[int]:
        """Indices of the rows to process: the targets, or a seeded sample of them under
        ``fraction`` and ``max_rows``, in row order."""
        idx = [i for i, t in enumerate(self.targets(rows)) if t]
        n = self.cap(len(idx), "processing")
        return idx if n == len(idx) else [idx[j] for j in stable_sample([rows[i] for i in idx], n, str(self.seed))]

    def budget(self, chars: int, slack: int = 16) -> int:
        """Tokens for an output of ``chars`` characters (the client's max_tokens at most)."""
        ceiling = self.max_tokens or self.client.sampling.max_tokens
        return min(ceiling, math.ceil(chars * self.tokens_per_char) + slack)

    def complete(self, prompts: Sequence[Prompt], stop: Sequence[str],
                 budgets: Sequence[int] | None = None) -> list[Completion]:
        t0 = time.perf_counter()
        out = self.client.complete(prompts, seed=self.seed, temperature=self.temperature, top_p=self.top_p,
                                   max_tokens=budgets if budgets is not None else self.max_tokens, stop=stop)
        self.last_stats.update(llm_seconds=round(time.perf_counter() - t0, 3),
                               llm_cached=self.client.last_call.get("cached", 0))
        return out

    def start_stats(self, rows: int, processed: int) -> Counter:
        """Fresh counts for a run; the returned Counter collects rejection reasons."""
        self.last_stats = dict(rows=rows, processed=processed)
        return Counter()

    def finish_stats(self, rejected: Counter, **counts: int) -> None:
        self.last_stats.update(counts, rejected={r: rejected[r] for r in REASONS if rejected[r]})
        log.info("%s: %s", self.name, ", ".join(f"{k} {v}" for k, v in self.last_stats.items()))
