"""Eval(., D_val): a fine-tuned model's score on reference rows, by ``eval.metric`` (autodp/metrics).

A ``model`` metric (answer NLL) reads the model's likelihood of the reference answers. A
``generations`` metric (eval=rouge_l) lets the model answer each question, greedy and prompted
with the fine-tune's template (what it learnt to answer), through the one LLM client
(transformers, or vLLM on GPUs), and compares the answers with the references. task=compare's final models
answer the test questions the same way.
"""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any, Mapping

from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from autodp.data.io import Row
from autodp.evaluate.finetune import answer_nll
from autodp.llm.client import build_client, in_chunks
from autodp.metrics import METRICS

CHUNK = 16  # questions per call: the progress bar's step (answers are cached as they come)


def save_model(model: PreTrainedModel, tok: PreTrainedTokenizerBase, folder: Path) -> None:
    """One plain model, LoRA adapters merged, so that it loads without its base."""
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def generate_answers(folder: Path, questions: list[Row], ft: Mapping[str, Any], gen: Mapping[str, Any],
                     seed: int, cache: bool = True) -> tuple[list[str], dict[str, int]]:
    """(one answer per question, how many were generated and how many cached). ``gen``: the LLM
    client's settings for the model's backend (transformers, or vllm on GPUs) and token budget.
    With ``cache`` the answers are cached by model folder and prompt, so a resumed run generates
    nothing twice."""
    settings = {k: v for k, v in gen.items() if v is not None}  # a null leaves the backend's default
    client = build_client({"backend": "transformers", **settings, "model": str(folder), "chat": False,
                           "temperature": 0.0, "cache": cache})
    prompts = [ft["template"].format(instruction=q["instruction"], input=q["input"]) for q in questions]
    return in_chunks(client, prompts, lambda chunk: [a.strip() for a in client.generate(chunk, seed=seed)],
                     f"answers {folder.name}", CHUNK)


def score(model: PreTrainedModel, tok: PreTrainedTokenizerBase, rows: list[Row], ft: Mapping[str, Any],
          ev: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The answer NLL metrics always; with a generation metric also its mean over ``rows`` (and,
    with ``ev["per_row"]``, each row's value as ``rows_<metric>``). The model is merged in place."""
    out = answer_nll(model, tok, rows, dict(ft), ev["batch_size"], bool(ev.get("per_row")))
    metric = METRICS[ev["metric"]]
    if metric.needs == "generations":
        with tempfile.TemporaryDirectory(prefix="autodp-score.") as tmp:
            save_model(model, tok, Path(tmp))
            said, _ = generate_answers(Path(tmp), rows, ft, ev["generation"], seed, cache=False)  # a throwaway model
        values = metric.per_question(said, [r["output"] for r in rows])
        out[metric.name] = statistics.fmean(values)
        if ev.get("per_row"):
            out[f"rows_{metric.name}"] = values
    return out
