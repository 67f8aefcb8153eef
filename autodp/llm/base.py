"""What the client and its backends exchange: a request, its completion, the backend protocol."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence, Union

# A chat (list of {"role", "content"} messages, for instruct models) or a raw prompt that the
# model continues (for base models, which have no chat template).
Prompt = Union[list[dict], str]


class BackendUnavailable(RuntimeError):
    """The backend's library or model is not installed here."""


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.8
    max_tokens: int = 512
    stop: tuple[str, ...] = ()  # generation ends before any of these strings

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    prompt: Prompt
    sampling: Sampling = field(default_factory=Sampling)
    schema: dict | None = None  # a JSON schema the answer must follow (constrained decoding)
    seed: int = 0

    @property
    def is_chat(self) -> bool:
        return not isinstance(self.prompt, str)


@dataclass(frozen=True)
class Completion:
    text: str
    # "stop": the model ended (end token or a stop string); "length": cut off at max_tokens
    finish_reason: str

    @property
    def cut_off(self) -> bool:
        return self.finish_reason == "length"


class Backend(Protocol):
    model_id: str  # names the weights in the cache key: same id, same answers
    batch_size: int  # the client sends at most this many requests per run()

    def run(self, requests: Sequence[Request]) -> list[Completion]:
        """One completion per request, in order."""
