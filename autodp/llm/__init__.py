"""One LLM client for the agent, the LLM operators and (later) the judge.

Backends: ``openai`` (any OpenAI-compatible server, concurrent requests, bounded retries on
transient errors), ``vllm`` (in-process, optional extra) and ``transformers`` (a local folder or a
GGUF shipped in a PyPI package, batched). Answers are cached on disk by (model, prompt, schema,
sampling, seed). Configured by ``conf/llm/*.yaml``. Nothing here imports data-handling code.
"""
from autodp.llm.base import Backend, BackendUnavailable, Completion, Prompt, Request, Sampling
from autodp.llm.client import LLMClient, build_client, shared_client

__all__ = ["Backend", "BackendUnavailable", "Completion", "LLMClient", "Prompt", "Request", "Sampling",
           "build_client", "shared_client"]
