"""Real models for the LLM operator tests, loaded once per session (imported by the test files)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from autodp.llm import LLMClient, shared_client
from autodp.llm.cache import DiskCache

LLM_CONF = Path(__file__).resolve().parents[1] / "conf" / "llm"


def llm_conf(name: str):
    return OmegaConf.load(LLM_CONF / f"{name}.yaml")


def model(name: str) -> LLMClient:
    torch.set_num_threads(1)
    return shared_client(llm_conf(name).client)


def fresh(client: LLMClient, cache: Path) -> LLMClient:
    """The same loaded model with an empty answer cache: the test really generates."""
    return LLMClient(client.backend, client.sampling, chat=client.chat, cache=DiskCache(cache))


@pytest.fixture(scope="session")
def gemma() -> LLMClient:
    """The CPU default of the LLM operators (conf/llm/gemma3.yaml)."""
    return model("gemma3")


@pytest.fixture(scope="session")
def smollm2() -> LLMClient:
    return model("smollm2")
