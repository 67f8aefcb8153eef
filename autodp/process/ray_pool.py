"""Row-wise model work on a pool of Ray actors: each actor builds its model once (``make()``), then
works on the slices of items it is sent; the results come back in order. Under ``process=ray``
the LLM backends (ray_llm.py), LESS's scores (``Operator.row_scores``) and DPS's embeddings go
through it."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np


class Worker:
    """One actor: ``make()`` once, then one of its methods per slice."""

    def __init__(self, make: Callable[[], Any]):
        self.obj = make()

    def attr(self, name: str) -> Any:
        return getattr(self.obj, name)

    def call(self, items: Sequence[Any], method: str | None) -> Any:
        return (self.obj if method is None else getattr(self.obj, method))(items)


class Pool:
    def __init__(self, ray: Any, actors: list[Any]):
        self.ray, self.actors = ray, actors

    def sliced(self, items: Sequence[Any], method: str | None = None) -> list[Any]:
        """The method's result on each of up to one slice of ``items`` per actor, in order."""
        n = min(len(self.actors), len(items))
        if not n:
            return []
        size = math.ceil(len(items) / n)
        return self.ray.get([a.call.remote(list(items[i * size:(i + 1) * size]), method)
                             for i, a in enumerate(self.actors[:n])])


@contextmanager
def actor_pool(ray: Any, make: Callable[[], Any], actors: int, cpus: float, gpus: float) -> Iterator[Pool]:
    """``actors`` Ray actors, each holding ``make()``, for as long as the block runs (they hold their
    CPUs and GPUs until then)."""
    cls = ray.remote(num_cpus=cpus, num_gpus=gpus)(Worker)
    made = ray.put(make)  # one copy in the object store, however large the state it carries
    pool = Pool(ray, [cls.remote(made) for _ in range(actors)])
    try:
        yield pool
    finally:
        for a in pool.actors:
            ray.kill(a)


class PooledEncoder:
    """An Encoder (autodp.accel.embed) whose texts are encoded in slices on a pool's actors."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self.id = pool.ray.get(pool.actors[0].attr.remote("id"))

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.concatenate(self.pool.sliced(texts, "encode") or [self.pool.ray.get(
            self.pool.actors[0].call.remote([], "encode"))])
