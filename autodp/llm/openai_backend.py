"""Any OpenAI-compatible server: `vllm serve` on a GPU node (the paper's setting) or
`python -m autodp.llm.serve` here. Requests of a batch go out concurrently."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import openai

from autodp.llm.base import Completion, Request
from autodp.llm.retry import with_retries

# Worth a second try: the server may be starting, overloaded or restarting.
TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    # APIConnectionError covers refused connections and timeouts (APITimeoutError)
    if isinstance(exc, openai.APIConnectionError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code in TRANSIENT_STATUS


class OpenAIBackend:
    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", api_key: str = "EMPTY",
                 timeout: float = 600.0, retries: int = 3, backoff: float = 1.0, concurrency: int = 16,
                 batch_size: int = 64):
        # the SDK's own retries are off: ours are the same for every call and bounded by `retries`
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        self.model_id = model
        self.retries, self.backoff, self.concurrency, self.batch_size = retries, backoff, concurrency, batch_size

    def run(self, requests: Sequence[Request]) -> list[Completion]:
        if len(requests) == 1:
            return [self.complete(requests[0])]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self.complete, requests))

    def complete(self, req: Request) -> Completion:
        return with_retries(lambda: self._call(req), is_transient, self.retries, self.backoff)

    def _call(self, req: Request) -> Completion:
        s = req.sampling
        kwargs: dict[str, Any] = dict(model=self.model_id, temperature=s.temperature, top_p=s.top_p,
                                      max_tokens=s.max_tokens, seed=req.seed)
        if s.stop:
            kwargs["stop"] = list(s.stop)
        if req.schema is not None:  # vLLM turns this into guided decoding
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "response", "schema": req.schema}}
        if req.is_chat:
            choice = self.client.chat.completions.create(messages=req.prompt, **kwargs).choices[0]
            text = choice.message.content or ""
        else:
            # the legacy endpoint has no response_format; vLLM reads the schema from extra_body
            if "response_format" in kwargs:
                kwargs["extra_body"] = {"response_format": kwargs.pop("response_format")}
            choice = self.client.completions.create(prompt=req.prompt, **kwargs).choices[0]
            text = choice.text or ""
        return Completion(text, "length" if choice.finish_reason == "length" else "stop")
