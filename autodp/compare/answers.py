"""An arm's final model answering the test questions, greedy, through the one LLM client (its
transformers backend here; answers cached by model folder and prompt, so a resumed compare
generates nothing twice), and its answer NLL on the same questions' gold answers."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from autodp.data.io import Row
from autodp.evaluate.finetune import answer_nll
from autodp.llm.client import build_client


def generate_answers(folder: Path, questions: list[Row], ft: Mapping[str, Any], gen: Mapping[str, Any],
                     seed: int) -> tuple[list[str], dict[str, Any]]:
    """(one answer per question, the client's counts: generated, cached, seconds). The prompt is
    the fine-tune's template, which is what the model learnt to answer."""
    client = build_client({"backend": "transformers", "model": str(folder), "chat": False, "temperature": 0.0,
                           "max_tokens": gen["max_tokens"], "batch_size": gen["batch_size"],
                           "cpu_threads": gen["cpu_threads"], "dtype": "float32"})
    prompts = [ft["template"].format(instruction=q["instruction"], input=q["input"]) for q in questions]
    answers = [a.strip() for a in client.generate(prompts, seed=seed)]
    return answers, client.last_call


def test_nll(folder: Path, questions: list[Row], ft: Mapping[str, Any], batch_size: int) -> float:
    """Answer NLL per character of the gold answers under the final model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return answer_nll(model, tok, questions, dict(ft), batch_size)["nll_per_char"]
