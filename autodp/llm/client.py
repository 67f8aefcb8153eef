"""One LLM client for the agent, the LLM operators and the judge: any backend, answers cached.

``build_client(cfg)`` takes a ``conf/llm/*.yaml`` mapping: ``backend`` (openai | vllm |
transformers), the default sampling (``temperature``, ``top_p``, ``max_tokens``, ``stop``),
``chat`` (false for a base model, which is prompted by continuation instead of a chat), ``cache``,
and the backend's own keys. Logs carry counts and timings only, never prompt or answer text.
"""
from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from autodp.llm.base import Backend, Completion, Prompt, Request, Sampling
from autodp.llm.cache import DiskCache, request_key
from autodp.resources import cache_dir

T, R = TypeVar("T"), TypeVar("R")

log = logging.getLogger(__name__)

# imported on first use: each pulls in its own heavy library
BACKENDS = {"openai": "autodp.llm.openai_backend:OpenAIBackend",
            "vllm": "autodp.llm.vllm_backend:VLLMBackend",
            "transformers": "autodp.llm.transformers_backend:TransformersBackend"}
SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "stop")


class LLMClient:
    def __init__(self, backend: Backend, sampling: Sampling = Sampling(), *, chat: bool = True,
                 cache: DiskCache | None = None):
        self.backend, self.sampling, self.chat, self.cache = backend, sampling, chat, cache
        self.last_call: dict[str, Any] = {}  # prompts, cached, generated, seconds of the last call

    @property
    def model(self) -> str:
        return self.backend.model_id

    def generate(self, prompts: Sequence[Prompt], *, schema: dict | None = None, seed: int = 0,
                 temperature: float | None = None, top_p: float | None = None,
                 max_tokens: int | Sequence[int] | None = None, stop: Sequence[str] | None = None) -> list[str]:
        """The answer text for each prompt, in order (see ``complete``)."""
        return [c.text for c in self.complete(prompts, schema=schema, seed=seed, temperature=temperature,
                                              top_p=top_p, max_tokens=max_tokens, stop=stop)]

    def complete(self, prompts: Sequence[Prompt], *, schema: dict | None = None, seed: int = 0,
                 temperature: float | None = None, top_p: float | None = None,
                 max_tokens: int | Sequence[int] | None = None, stop: Sequence[str] | None = None) -> list[Completion]:
        """One completion per prompt, with whether it was cut off. A prompt is a chat (a list of
        messages) or a raw string the model continues. Sampling arguments left None take the
        client's defaults; ``max_tokens`` may also be one budget per prompt. Identical requests
        are generated once, cached ones not at all."""
        t0 = time.perf_counter()
        overrides = dict(temperature=temperature, top_p=top_p, stop=None if stop is None else tuple(stop))
        sampling = replace(self.sampling, **{k: v for k, v in overrides.items() if v is not None})
        budgets = max_tokens if isinstance(max_tokens, Sequence) else [max_tokens] * len(prompts)
        if len(budgets) != len(prompts):
            raise ValueError(f"{len(budgets)} max_tokens for {len(prompts)} prompts")
        requests = [Request(p, sampling if m is None else replace(sampling, max_tokens=int(m)), schema, seed)
                    for p, m in zip(prompts, budgets)]
        keys = [request_key(self.model, r) for r in requests]
        unique = dict(zip(keys, requests))  # identical requests are generated once
        done = {k: c for k in unique if (c := self._cached(k)) is not None}
        todo = [k for k in unique if k not in done]
        for start in range(0, len(todo), self.backend.batch_size):
            chunk = todo[start:start + self.backend.batch_size]
            # stored chunk by chunk: a crash loses at most one chunk of work
            for key, completion in zip(chunk, self.backend.run([unique[k] for k in chunk])):
                done[key] = completion
                if self.cache is not None:
                    self.cache.put(key, completion)
        seconds = time.perf_counter() - t0
        cached = len(unique) - len(todo)
        self.last_call = dict(prompts=len(prompts), cached=cached, generated=len(todo), seconds=seconds)
        if todo:
            log.info("llm %s: %d prompts, %d cached, %d generated in %.1f s", self.model, len(prompts), cached,
                     len(todo), seconds)
        return [done[k] for k in keys]

    def _cached(self, key: str) -> Completion | None:
        return self.cache.get(key) if self.cache is not None else None


def in_chunks(client: LLMClient, items: Sequence[T], fn: Callable[[Sequence[T]], list[R]], desc: str,
              chunk: int = 16) -> tuple[list[R], dict[str, int]]:
    """``fn`` (which calls ``client``) over ``items`` in chunks, with a progress bar stepping per
    chunk: (the results in order, how many answers were generated and how many came from the cache)."""
    out: list[R] = []
    counts = {"generated": 0, "cached": 0}
    with tqdm(total=len(items), desc=desc, unit="question", leave=False) as bar:
        for start in range(0, len(items), chunk):
            out += fn(items[start:start + chunk])
            counts = {k: v + client.last_call.get(k, 0) for k, v in counts.items()}
            bar.update(len(items[start:start + chunk]))
    return out, counts


def _plain(cfg: Mapping) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    return dict(cfg)


def make_backend(kind: str, params: Mapping[str, Any]) -> Backend:
    """The backend ``kind`` (a key of BACKENDS) built from its own keys of a ``conf/llm`` client."""
    module, _, name = BACKENDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)(**params)


def build_client(cfg: Mapping, backend: Callable[[str, dict[str, Any]], Backend] = make_backend) -> LLMClient:
    """A client from a ``conf/llm/*.yaml`` mapping (a dict or an OmegaConf node). ``backend(kind,
    params)`` builds what generates; by default the backend itself, in this process (an engine may
    build a pool of them on a cluster: autodp/process/ray_llm.py)."""
    cfg = _plain(cfg)
    kind = cfg.pop("backend")
    if kind not in BACKENDS:
        raise ValueError(f"unknown llm backend {kind!r}; use one of {sorted(BACKENDS)}")
    sampling = {k: cfg.pop(k) for k in SAMPLING_KEYS if k in cfg}
    if "stop" in sampling:
        sampling["stop"] = tuple(sampling["stop"] or ())
    chat, use_cache = bool(cfg.pop("chat", True)), bool(cfg.pop("cache", True))
    return LLMClient(backend(kind, cfg), Sampling(**sampling), chat=chat,
                     cache=DiskCache(cache_dir("llm")) if use_cache else None)


@lru_cache(maxsize=None)
def _shared(key: str) -> LLMClient:
    return build_client(json.loads(key))


def shared_client(cfg: Mapping) -> LLMClient:
    """One client per distinct config in this process: operators that share a model load it once."""
    return _shared(json.dumps(_plain(cfg), sort_keys=True))
