"""A local Hugging Face model as the agent, optionally held to a JSON schema by lm-format-enforcer.

A tiny model such as SmolLM2-135M cannot follow the paper's free format, so structured output
is what makes it usable: the schema's enum leaves it choosing only among valid strategies.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from lmformatenforcer import JsonSchemaParser, TokenEnforcer, TokenEnforcerTokenizerData
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from autodp.resources import cache_dir, resolve_path

log = logging.getLogger(__name__)


def convert_gguf(folder: Path, gguf_file: str) -> Path:
    """A plain HF copy of a GGUF model in the cache: reading GGUF takes ~25 s (dequantising and
    rebuilding the tokenizer), the copy then loads in about a second."""
    target = cache_dir("models") / Path(gguf_file).stem
    if (target / "config.json").exists():
        return target
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    # the weights are dequantised already; left in place, the GGUF quantizer would be saved as
    # the config's quantization method and expected again on every load
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:  # atomic: a reader sees the whole folder or none, even with several processes at it
        tmp.rename(target)
    except OSError:  # another process got there first
        shutil.rmtree(tmp)
    log.info("converted %s to %s in %.1f s", gguf_file, target, time.perf_counter() - t0)
    return target


def enforcer_data(tokenizer: PreTrainedTokenizerBase) -> TokenEnforcerTokenizerData:
    """The per-tokenizer tables of lm-format-enforcer. Its transformers integration computes the
    same thing, but under transformers 5 it fails to import (PreTrainedTokenizerBase moved)."""
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    regular = []
    for i in range(len(tokenizer)):
        if i not in special:
            # decoding after '0' keeps a leading space that decoding the token alone would drop
            after_zero = tokenizer.decode([zero, i])[1:]
            regular.append((i, after_zero, len(after_zero) > len(tokenizer.decode([i]))))
    return TokenEnforcerTokenizerData(regular, lambda ids: tokenizer.decode(ids).rstrip("\ufffd"),
                                      tokenizer.eos_token_id, False, len(tokenizer))


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's CPU thread count for a while, then back: it is process-wide, and the process may
    train a model with all cores once the agent is done."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TransformersBackend:
    def __init__(self, model: str, gguf_file: str | None = None, temperature: float = 0.6,
                 top_p: float = 0.95, max_new_tokens: int = 1024, device: str | None = None,
                 cpu_threads: int | None = None):
        t0 = time.perf_counter()
        folder = resolve_path(model)
        if gguf_file:
            folder = convert_gguf(folder, gguf_file)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto").to(self.device).eval()
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.cpu_threads = cpu_threads if self.device == "cpu" else None
        self._enforcer_data: TokenEnforcerTokenizerData | None = None  # built on first structured call
        self.load_seconds = time.perf_counter() - t0
        log.info("loaded agent model %s in %.1f s", folder, self.load_seconds)

    def complete(self, messages: list[dict], schema: dict | None, seed: int) -> str:
        inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                    return_tensors="pt", return_dict=True).to(self.device)
        kwargs = dict(max_new_tokens=self.max_new_tokens, pad_token_id=self.tokenizer.eos_token_id)
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(do_sample=False)
        if schema is not None:
            kwargs["prefix_allowed_tokens_fn"] = self._allowed_tokens_fn(schema)
        torch.manual_seed(seed)
        with torch.no_grad(), torch_threads(self.cpu_threads):
            out = self.model.generate(**inputs, **kwargs)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def _allowed_tokens_fn(self, schema: dict) -> Callable[[int, torch.Tensor], list[int]]:
        if self._enforcer_data is None:
            t0 = time.perf_counter()
            self._enforcer_data = enforcer_data(self.tokenizer)
            log.info("built lm-format-enforcer tables in %.1f s", time.perf_counter() - t0)
        enforcer = TokenEnforcer(self._enforcer_data, JsonSchemaParser(schema))
        # compact JSON in schema order: a tiny model otherwise spends tokens on indentation and
        # trailing newlines, and may write the decision before choosing the combinations
        config = enforcer.root_parser.config
        config.max_consecutive_whitespaces, config.force_json_field_order = 1, True
        return lambda batch_id, sent: enforcer.get_allowed_tokens(sent.tolist()).allowed_tokens
