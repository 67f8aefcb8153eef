"""An LLM operator's generation on a pool of Ray actors (``process=ray``, ``process.llm``).

The operator itself (which rows, its prompts, the checks on its answers) runs in the applying
process, as on one machine; what it asks the LLM goes to ``actors`` Ray actors, each holding the
operator's own backend of conf/llm, loaded once: the ``transformers`` backend on CPU nodes, or
``vllm`` with ``gpus`` per actor on GPU nodes. The client, and with it the answer cache, stays in the
applying process: a cached answer is never sent out, and the cache key names the backend's model,
not the pool, so strategies and both engines share answers as before.

A client's chunk of requests is cut into the slices of the backend's own ``batch_size`` that the
client would have sent it one by one; each actor generates whole slices. A slice is generated as it
is on one machine (the same prompts batched together, the same seed), so the pool's answers are the
local engine's (tests/test_process.py).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from autodp.llm.base import Backend, Completion, Request
from autodp.llm.client import LLMClient, build_client, make_backend

log = logging.getLogger(__name__)


class Generator:
    """One actor: a backend, loaded once."""

    def __init__(self, kind: str, params: dict[str, Any]):
        self.backend = make_backend(kind, params)

    def info(self) -> tuple[str, int]:
        return self.backend.model_id, self.backend.batch_size

    def run(self, requests: Sequence[Request]) -> list[Completion]:
        return self.backend.run(requests)


class RayPool:
    """A Backend whose slices are generated on ``actors`` Ray actors at once."""

    def __init__(self, ray: Any, kind: str, params: dict[str, Any], actors: int, cpus: float, gpus: float,
                 slices_per_actor: int):
        from ray.util import ActorPool

        t0 = time.perf_counter()
        actor = ray.remote(num_cpus=cpus, num_gpus=gpus)(Generator)
        self.ray, self.actors = ray, [actor.remote(kind, params) for _ in range(actors)]
        (self.model_id, self.slice), *_ = ray.get([a.info.remote() for a in self.actors])
        # the client sends this many at a time, caching after each: every actor gets work
        self.batch_size = self.slice * actors * slices_per_actor
        self.pool = ActorPool(self.actors)
        log.info("llm pool: %d Ray actors of %s (%s CPUs, %s GPUs each), loaded in %.1f s", actors, self.model_id,
                 cpus, gpus, time.perf_counter() - t0)

    def run(self, requests: Sequence[Request]) -> list[Completion]:
        slices = [list(requests[i:i + self.slice]) for i in range(0, len(requests), self.slice)]
        return [c for done in self.pool.map(lambda a, part: a.run.remote(part), slices) for c in done]

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)


@contextmanager
def pooled(ray: Any, llm_cfg: Any, actors: int, cpus: float, gpus: float,
           slices_per_actor: int = 4) -> Iterator[LLMClient]:
    """A client for ``llm_cfg`` (a conf/llm client) generating on a pool, for one operator's run:
    the actors hold their CPUs and GPUs only while it runs, so the Ray tasks that write its rows
    afterwards find them free."""
    pools: list[RayPool] = []

    def backend(kind: str, params: dict[str, Any]) -> Backend:
        pools.append(RayPool(ray, kind, params, actors, cpus, gpus, slices_per_actor))
        return pools[-1]

    try:
        yield build_client(llm_cfg, backend)
    finally:
        for p in pools:
            p.close()
