"""An arm's final model answering the test questions, greedy, through the one LLM client (its
transformers backend here; answers cached by model folder and prompt, so a resumed compare
generates nothing twice), and its answer NLL on the same questions' gold answers."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tqdm.auto import tqdm

from autodp.data.io import Row
from autodp.evaluate.finetune import answer_nll
from autodp.llm.client import build_client

CHUNK = 16  # questions per call: the progress bar's step (answers are cached as they come)


def generate_answers(folder: Path, questions: list[Row], ft: Mapping[str, Any], gen: Mapping[str, Any],
                     seed: int) -> tuple[list[str], dict[str, Any]]:
    """(one answer per question, how many were generated and how many cached). The prompt is
    the fine-tune's template, which is what the model learnt to answer."""
    client = build_client({"backend": "transformers", "model": str(folder), "chat": False, "temperature": 0.0,
                           "max_tokens": gen["max_tokens"], "batch_size": gen["batch_size"],
                           "cpu_threads": gen["cpu_threads"], "dtype": "float32"})
    prompts = [ft["template"].format(instruction=q["instruction"], input=q["input"]) for q in questions]
    answers, counts = [], {"generated": 0, "cached": 0}
    with tqdm(total=len(prompts), desc=f"answers {folder.name}", unit="question") as bar:
        for start in range(0, len(prompts), CHUNK):
            answers += [a.strip() for a in client.generate(prompts[start:start + CHUNK], seed=seed)]
            counts = {k: v + client.last_call.get(k, 0) for k, v in counts.items()}
            bar.update(len(prompts[start:start + CHUNK]))
    return answers, counts


def gold_nll(folder: Path, questions: list[Row], ft: Mapping[str, Any], batch_size: int) -> float:
    """Answer NLL per character of the gold answers under the final model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return answer_nll(model, tok, questions, dict(ft), batch_size)["nll_per_char"]
