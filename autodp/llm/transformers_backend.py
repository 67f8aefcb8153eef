"""A local Hugging Face model, batched; optionally held to a JSON schema by lm-format-enforcer.

A tiny model such as SmolLM2-135M cannot follow the agent's free format, so structured output
is what makes it usable there: the schema's enum leaves it choosing among valid answers only.

On a CPU two options make the agent's calls cheap: ``cpu_quantize: int8`` (dynamic int8 Linear
layers: decoding reads a quarter of the weights) and ``prefix_block`` (the paper's prompts open
with ~800 tokens that every round repeats: their KV is kept in whole blocks and reused). A third,
``top_k``, makes sampling from a large vocabulary cheap: transformers' top-p sorts the whole
vocabulary at every step (Gemma 3: 262k tokens, 220 ms a step for 8 rows on one core, more than
the model's forward pass); nucleus sampling within the top k candidates needs only a top-k.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from lmformatenforcer import JsonSchemaParser, TokenEnforcer, TokenEnforcerTokenizerData
from transformers import (AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedModel,
                          LogitsProcessor, PreTrainedTokenizerBase, StoppingCriteria)

from autodp.llm.base import Completion, Request
from autodp.llm.local_models import local_model
from autodp.resources import cpu_threads

log = logging.getLogger(__name__)


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
    train a model with all cores once generation is done."""
    before = torch.get_num_threads()
    torch.set_num_threads(cpu_threads(n or before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _group_key(req: Request) -> str:
    # one generate() call shares sampling, schema and RNG seed across its rows; each row keeps
    # its own token budget (RowBudgets)
    sampling = {k: v for k, v in req.sampling.as_dict().items() if k != "max_tokens"}
    return json.dumps([req.is_chat, sampling, req.schema, req.seed], sort_keys=True)


class RowBudgets(StoppingCriteria):
    """Ends each row at its own number of new tokens, so rows with different budgets share a batch."""

    def __init__(self, prompt_len: int, budgets: list[int], device: str):
        self.prompt_len, self.budgets = prompt_len, torch.tensor(budgets, device=device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return (input_ids.shape[1] - self.prompt_len) >= self.budgets


class NucleusInTopK(LogitsProcessor):
    """Temperature, then top-p (nucleus) sampling among the ``k`` most likely tokens: the same
    distribution as top-p alone whenever the nucleus fits in k tokens, at the cost of a top-k
    instead of a sort of the vocabulary."""

    def __init__(self, temperature: float, top_p: float, k: int):
        self.temperature, self.top_p, self.k = temperature, top_p, k

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        top, idx = (scores / self.temperature).topk(min(self.k, scores.shape[-1]), dim=-1)  # sorted
        probs = top.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs > self.top_p  # the mass before it already reaches top_p
        return torch.full_like(scores, -math.inf).scatter_(-1, idx, top.masked_fill(outside, -math.inf))


def quantize_int8(model: PreTrainedModel) -> PreTrainedModel:
    """Dynamic int8 Linear layers (fbgemm). On the 2-core CI machine SmolLM2-135M then decodes in
    26 instead of 70 ms a token and prefills 1.9x faster. torch marks quantized tensors deprecated
    for a future release; torch is pinned (Makefile), and torchao's CPU path measured slower."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class PrefixCache:
    """The KV cache of the last single-row prompt, kept in whole blocks of ``block`` tokens.

    A prompt is always prefilled block by block, each block attending to the cached ones, and
    only then handed to generate() with its last partial block. So a block's KV is computed by
    the same operations whether it is reused or not, and an answer does not depend on which
    prompt came before (a resumed run generates what the first run did).
    """

    def __init__(self, block: int):
        self.block, self.ids, self.kv = block, [], None

    def prefill(self, model: PreTrainedModel, ids: list[int]) -> DynamicCache | None:
        """A cache holding the KV of ``ids``' whole blocks (the last token is always left for
        generate()), reusing the leading blocks that equal the last prompt's."""
        b, n = self.block, (len(ids) - 1) // self.block
        if n == 0:
            return None
        reuse = 0
        while reuse < min(n, len(self.ids) // b) and ids[reuse * b:(reuse + 1) * b] == self.ids[reuse * b:(reuse + 1) * b]:
            reuse += 1
        if reuse:
            kv = copy.deepcopy(self.kv)
            kv.crop(reuse * b - len(self.ids))  # transformers 5: minus the tokens to drop
        else:
            kv = DynamicCache(config=model.config)
        for i in range(reuse, n):
            model(input_ids=torch.tensor([ids[i * b:(i + 1) * b]], device=model.device), past_key_values=kv,
                  use_cache=True)
        self.ids, self.kv = ids[:n * b], kv
        return copy.deepcopy(kv)  # generate() appends to the copy


class TransformersBackend:
    def __init__(self, model: str, gguf_file: str | None = None, device: str | None = None,
                 cpu_threads: int | None = None, batch_size: int = 8, dtype: str = "auto",
                 cpu_quantize: str | None = None, prefix_block: int = 0, top_k: int | None = None):
        t0 = time.perf_counter()
        folder = local_model(model, gguf_file)
        self.model_id = f"{model}/{gguf_file}" if gguf_file else model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.tokenizer.padding_side = "left"  # generation appends on the right
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(self.device).eval()
        if cpu_quantize not in (None, "int8"):
            raise ValueError(f"cpu_quantize must be int8 or null, not {cpu_quantize!r}")
        if cpu_quantize and self.device == "cpu":
            self.model = quantize_int8(self.model)
            self.model_id += "+int8"  # other answers than the float model's: another cache key
        self.prefix = PrefixCache(prefix_block) if prefix_block > 0 else None
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive number of candidates or null, not {top_k!r}")
        self.top_k = top_k
        if top_k:
            self.model_id += f"+top{top_k}"  # other samples than plain top-p: another cache key
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
        self.cpu_threads = cpu_threads if self.device == "cpu" else None
        self.batch_size = batch_size
        self._enforcer_data: TokenEnforcerTokenizerData | None = None  # built on first structured call
        self.load_seconds = time.perf_counter() - t0
        log.info("loaded %s in %.1f s", folder, self.load_seconds)

    def run(self, requests: Sequence[Request]) -> list[Completion]:
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(_group_key(req), []).append(i)
        out: list[Completion | None] = [None] * len(requests)
        for idx in groups.values():
            texts = [self._text(requests[i]) for i in idx]
            # similar lengths together: less padding, and rows of a batch finish closer together
            order = sorted(range(len(idx)), key=lambda j: len(texts[j]))
            for start in range(0, len(order), self.batch_size):
                part = order[start:start + self.batch_size]
                batch = [requests[idx[j]] for j in part]
                for j, c in zip(part, self._generate([texts[j] for j in part], batch)):
                    out[idx[j]] = c
        return out  # type: ignore[return-value]  # every slot was filled

    def _text(self, req: Request) -> str:
        if not req.is_chat:
            return req.prompt  # type: ignore[return-value]
        return self.tokenizer.apply_chat_template(req.prompt, add_generation_prompt=True, tokenize=False)

    def _generate(self, texts: list[str], batch: list[Request]) -> list[Completion]:
        """One batch of requests that share sampling (but for max_tokens), schema and seed."""
        req, s = batch[0], batch[0].sampling
        budgets = [r.sampling.max_tokens for r in batch]
        # a chat template writes its own special tokens; a raw prompt gets the tokenizer's (BOS)
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True,
                                add_special_tokens=not req.is_chat).to(self.device)
        prompt_len = inputs["input_ids"].shape[1]
        kwargs: dict = dict(max_new_tokens=max(budgets), pad_token_id=self.tokenizer.pad_token_id,
                            stopping_criteria=[RowBudgets(prompt_len, budgets, self.device)])
        if s.temperature > 0 and self.top_k:
            kwargs.update(do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                          logits_processor=[NucleusInTopK(s.temperature, s.top_p, self.top_k)])
        elif s.temperature > 0:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
        else:
            kwargs.update(do_sample=False)
        if s.stop:
            kwargs.update(stop_strings=list(s.stop), tokenizer=self.tokenizer)
        if req.schema is not None:
            kwargs["prefix_allowed_tokens_fn"] = self._allowed_tokens_fn(req.schema)
        with torch.no_grad(), torch_threads(self.cpu_threads):
            if self.prefix is not None and len(texts) == 1:
                kwargs["past_key_values"] = self.prefix.prefill(self.model, inputs["input_ids"][0].tolist())
            torch.manual_seed(req.seed)
            out = self.model.generate(**inputs, **kwargs)
        return [self._completion(ids.tolist()[:budget], s.stop, budget)
                for ids, budget in zip(out[:, prompt_len:], budgets)]

    def _completion(self, ids: list[int], stop: tuple[str, ...], budget: int) -> Completion:
        """``ids``: the row's first ``budget`` new tokens; what follows is padding, which may be
        the end token itself (SmolLM2), so only these tell whether the row ended by itself."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
        if cuts:
            return Completion(text[:min(cuts)], "stop")
        ended = any(i in self.eos_ids for i in ids) or len(ids) < budget
        return Completion(text, "stop" if ended else "length")

    def _allowed_tokens_fn(self, schema: dict) -> Callable[[int, torch.Tensor], list[int]]:
        if self._enforcer_data is None:
            t0 = time.perf_counter()
            self._enforcer_data = enforcer_data(self.tokenizer)
            log.info("built lm-format-enforcer tables in %.1f s", time.perf_counter() - t0)
        # one enforcer serves the whole batch: it tells rows apart by their token prefixes
        enforcer = TokenEnforcer(self._enforcer_data, JsonSchemaParser(schema))
        # compact JSON in schema order: a tiny model otherwise spends tokens on indentation and
        # trailing newlines, and may write the decision before choosing the combinations
        config = enforcer.root_parser.config
        config.max_consecutive_whitespaces, config.force_json_field_order = 1, True
        return lambda batch_id, sent: enforcer.get_allowed_tokens(sent.tolist()).allowed_tokens
