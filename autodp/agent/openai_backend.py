"""Any OpenAI-compatible chat server, e.g. vLLM serving Qwen3-32B as in the paper."""
from __future__ import annotations

import openai


class OpenAIBackend:
    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", api_key: str = "EMPTY",
                 temperature: float = 0.6, top_p: float = 0.95, max_tokens: int = 4096,
                 timeout: float = 600.0, retries: int = 3):
        # the client's own retries cover exactly the transient failures: connection errors,
        # timeouts, 408/409/429 and 5xx, with exponential backoff
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=retries)
        self.model, self.temperature, self.top_p, self.max_tokens = model, temperature, top_p, max_tokens

    def complete(self, messages: list[dict], schema: dict | None, seed: int) -> str:
        kwargs = {}
        if schema is not None:  # vLLM turns this into guided decoding
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {"name": "strategies", "schema": schema}}
        response = self.client.chat.completions.create(
            model=self.model, messages=messages, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens, seed=seed, **kwargs)
        return response.choices[0].message.content or ""
