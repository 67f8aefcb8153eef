"""One arm of a comparison as a self-contained, picklable job (``cluster=slurm``: a GPU job, with
DeepSpeed when the finetune config has it): the arm's final model, its greedy answers to the test
questions, and its answer NLL on their gold answers. The model and the answers are cached by what
made them, so a rerun job or a resumed compare redoes nothing."""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from autodp.compare.final import final_model
from autodp.data.io import load_rows, load_spec
from autodp.evaluate.finetune import answer_nll
from autodp.evaluate.request import signature_of
from autodp.evaluate.scoring import generate_answers
from autodp.resources import cpu_threads

LOCATIONS = ("data", "models")  # where the job reads and writes, not what it computes


@dataclass(frozen=True)
class ArmRequest:
    strategy: str                # the arm's name: the job journal and the progress bar show it
    data: str                    # the arm's training rows, JSON lines on a filesystem the job mounts
    rows: str                    # their fingerprint: what the arm is
    finetune: dict[str, Any]     # conf/finetune: the final model
    seed: int
    pool: dict[str, Any]         # the raw pool a scratch base is pre-warmed on
    reference_rows: int          # the unprocessed training set's rows (budget: steps)
    questions: dict[str, Any]    # the test questions' spec
    generation: dict[str, Any]   # conf/compare generation settings
    batch_size: int              # of the NLL pass
    models: str                  # the final models' cache folder

    @property
    def signature(self) -> str:
        return signature_of(self, LOCATIONS)

    def failed(self, error: str, trace: str) -> "ArmResult":
        return ArmResult(strategy=self.strategy, signature=self.signature, status="failed", error=error,
                         traceback=trace)


@dataclass
class ArmResult:
    strategy: str
    signature: str
    status: str                                 # "ok" | "failed"
    model: str | None = None                    # the final model's folder
    trained: bool = False                       # False: the cached model was reused
    answers: list[str] = field(default_factory=list)
    generated: int = 0
    cached: int = 0
    test_nll_per_char: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None


def run_arm(req: ArmRequest) -> ArmResult:
    """Never raises: a failing arm is a result, so the other arms' jobs still report."""
    res = ArmResult(strategy=req.strategy, signature=req.signature, status="failed")
    try:
        questions = load_spec(req.questions)
        t0 = time.perf_counter()
        folder, res.trained = final_model(Path(req.models), load_rows(req.data), req.finetune, req.seed,
                                          load_spec(req.pool), req.reference_rows)
        t1 = time.perf_counter()
        res.model = str(folder)
        res.answers, counts = generate_answers(folder, questions, req.finetune, req.generation, req.seed)
        res.generated, res.cached = counts["generated"], counts["cached"]
        t2 = time.perf_counter()
        res.test_nll_per_char = _gold_nll(folder, questions, req)
        res.timings = {"finetune": t1 - t0, "generate": t2 - t1, "nll": time.perf_counter() - t2}
        res.status = "ok"
    except Exception as e:  # noqa: BLE001 - reported per arm; the compare names it and stops
        res.error, res.traceback = type(e).__name__, traceback.format_exc()
    return res


def _gold_nll(folder: Path, questions: list[dict[str, Any]], req: ArmRequest) -> float:
    torch.set_num_threads(cpu_threads(req.generation.get("cpu_threads")))
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return answer_nll(model, tok, questions, req.finetune, req.batch_size)["nll_per_char"]
