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
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any

from autodp.llm.base import Backend, Completion, Request
from autodp.llm.client import LLMClient, build_client, make_backend
from autodp.process.ray_pool import Pool, actor_pool

log = logging.getLogger(__name__)


class RayPool:
    """A Backend whose batches are generated on a pool's actors, each holding the backend itself."""

    def __init__(self, pool: Pool, slices_per_actor: int):
        from ray.util import ActorPool

        t0 = time.perf_counter()
        first = pool.actors[0]
        self.model_id, self.slice = pool.ray.get([first.attr.remote("model_id"), first.attr.remote("batch_size")])
        # the client sends this many at a time, caching after each: every actor gets work
        self.batch_size = self.slice * len(pool.actors) * slices_per_actor
        self.pool = ActorPool(pool.actors)
        log.info("llm pool: %d Ray actors of %s, loaded in %.1f s", len(pool.actors), self.model_id,
                 time.perf_counter() - t0)

    def run(self, requests: Sequence[Request]) -> list[Completion]:
        slices = [list(requests[i:i + self.slice]) for i in range(0, len(requests), self.slice)]
        return [c for done in self.pool.map(lambda a, part: a.call.remote(part, "run"), slices) for c in done]


@contextmanager
def pooled(ray: Any, llm_cfg: Any, actors: int, cpus: float, gpus: float,
           slices_per_actor: int = 4) -> Iterator[LLMClient]:
    """A client for ``llm_cfg`` (a conf/llm client) generating on a pool, for one operator's run:
    the actors hold their CPUs and GPUs only while it runs, so the Ray tasks that write its rows
    afterwards find them free."""
    with ExitStack() as stack:
        def backend(kind: str, params: dict[str, Any]) -> Backend:
            pool = stack.enter_context(actor_pool(ray, partial(make_backend, kind, params), actors, cpus, gpus))
            return RayPool(pool, slices_per_actor)

        yield build_client(llm_cfg, backend)
