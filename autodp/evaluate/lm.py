"""The model that R(f) fine-tunes: a real HF causal LM, either pretrained (a local folder, the
paper's setting) or a tiny Llama-shape model with a character vocabulary, pre-warmed once on the
raw training pool and cached (the CPU default; see README "Why this evaluator").
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast)

from autodp.data.io import Row, fingerprint
from autodp.evaluate.finetune import train
from autodp.llm.local_models import local_model
from autodp.resources import cache_dir, cache_lock

log = logging.getLogger(__name__)
SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]


def char_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """One token per character; the ``vocab_size`` most frequent characters, the rest [UNK]."""
    counts = Counter(ch for t in texts for ch in t)
    chars = [c for c, _ in counts.most_common(vocab_size - len(SPECIALS))]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="[BOS]", eos_token="[EOS]")


# The fine-tune keys that shape a pre-warmed base besides ``model`` itself.
_ENCODING_KEYS = ("template", "max_length", "max_prompt_tokens", "batch_size")


def load_base(ft: dict[str, Any], corpus: list[Row]) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load W_pre from ``ft["model"]``; a scratch base is pre-warmed on ``corpus`` once and cached."""
    model_cfg = ft["model"]
    if model_cfg["kind"] == "pretrained":
        path = local_model(model_cfg["path"], model_cfg.get("gguf_file"))
        tok = AutoTokenizer.from_pretrained(path)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, model_cfg.get("dtype", "float32")),
                                                     attn_implementation=ft.get("attn_implementation"))
        return model, tok
    if model_cfg["kind"] != "scratch":
        raise ValueError(f"finetune.model.kind must be 'pretrained' or 'scratch', got {model_cfg['kind']!r}")
    ident = {"model": model_cfg, "corpus": fingerprint(corpus), **{k: ft[k] for k in _ENCODING_KEYS}}
    folder = cache_dir("bases") / hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    if not (folder / "config.json").exists():
        with cache_lock(folder):  # jobs of one array on a fresh cache wait for the first to pre-warm
            if not (folder / "config.json").exists():
                _prewarm(ft, corpus, folder)
    return (LlamaForCausalLM.from_pretrained(folder, attn_implementation=ft.get("attn_implementation")),
            AutoTokenizer.from_pretrained(folder))


def _prewarm(ft: dict[str, Any], corpus: list[Row], folder: Path) -> None:
    """Build the scratch base of ``ft["model"]``, pre-warmed on ``corpus``, into ``folder``."""
    model_cfg = ft["model"]
    t0 = time.perf_counter()
    tok = char_tokenizer((r["instruction"] + r["input"] + r["output"] for r in corpus), model_cfg["vocab_size"])
    with torch.random.fork_rng():  # seeded init and pre-warm, without touching the caller's generator
        torch.manual_seed(model_cfg["seed"])
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=model_cfg["hidden_size"],
                          intermediate_size=model_cfg["intermediate_size"],
                          num_hidden_layers=model_cfg["layers"], num_attention_heads=model_cfg["heads"],
                          num_key_value_heads=model_cfg["heads"], max_position_embeddings=model_cfg["max_length"],
                          tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        model = LlamaForCausalLM(cfg)
        # Language-model loss on whole rows: the base learns the domain's text, not its answers.
        log.info("pre-warming the evaluator's base model on %d pool rows (once; cached in %s)", len(corpus),
                 folder.parent)
        train(model, tok, corpus, {**ft, **model_cfg["prewarm"]}, seed=model_cfg["seed"], answer_only=False,
              progress=True)
    # Save to a temp folder and rename, so a crash never leaves a half-written base.
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another process won the race; its base is identical
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("pre-warmed base %s (%d params) in %.1f s", folder.name,
             sum(p.numel() for p in model.parameters()), time.perf_counter() - t0)
