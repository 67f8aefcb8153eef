"""Bounded retries with exponential backoff, for failures that a second try can fix."""
from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def with_retries(fn: Callable[[], T], is_transient: Callable[[BaseException], bool], retries: int,
                 backoff: float = 1.0, max_delay: float = 30.0) -> T:
    """``fn()``, tried at most ``retries + 1`` times; only transient errors are tried again.

    The delay before try k (k >= 1) is ``backoff * 2**(k-1)`` (at most ``max_delay``) with +-25%
    jitter, so that many workers hitting one overloaded server do not retry in lockstep.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as e:
            if attempt >= retries or not is_transient(e):
                raise
            delay = min(max_delay, backoff * 2 ** attempt) * random.uniform(0.75, 1.25)
            attempt += 1
            log.warning("transient %s (try %d of %d), retrying in %.1f s", type(e).__name__, attempt,
                        retries + 1, delay)
            time.sleep(delay)
