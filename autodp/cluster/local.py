"""Evaluate in this process, one request after another (the 2-core CPU default)."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from tqdm.auto import tqdm


class LocalExecutor:
    def __init__(self, cfg: Any = None, store: Any = None):
        """Nothing to set up: requests run one after another in this process."""

    def map(self, fn: Callable[[Any], Any], requests: Sequence[Any], desc: str = "evaluate") -> Iterator[Any]:
        """Yields each result as soon as it exists, so the caller journals it before the next starts."""
        if not requests:
            return
        for req in tqdm(requests, desc=desc, unit="strategy", leave=False):
            yield fn(req)
