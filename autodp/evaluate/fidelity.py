"""Does R(f) rank data quality? Fine-tune on a clean sample and on the same sample with injected
noise (HTML, truncation, swapped answers, duplicates), per seed, through the real evaluator.

    python -m autodp.evaluate.fidelity [hydra overrides]   (e.g. finetune.epochs=2)
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig

from autodp.data.io import load_spec, write_rows
from autodp.data.specs import data_specs
from autodp.data.noise import inject_noise
from autodp.evaluate.evaluator import evaluate
from autodp.evaluate.request import EvalRequest


@dataclass
class Fidelity:
    clean: list[float]
    noisy: list[float]
    seconds_per_eval: float

    @property
    def gaps(self) -> list[float]:
        return [c - n for c, n in zip(self.clean, self.noisy)]

    @property
    def mean_gap(self) -> float:
        return statistics.mean(self.gaps)

    @property
    def sd_gap(self) -> float:
        return statistics.stdev(self.gaps)


def measure(cfg: DictConfig, seeds: list[int], fraction: float = 0.4) -> Fidelity:
    """R(clean) and R(noisy) for each seed; the seed drives the noise and the fine-tune order."""
    out = Fidelity([], [], 0.0)
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        specs = data_specs(cfg, Path(tmp) / "splits")
        clean = load_spec(specs.train)
        write_rows(Path(tmp) / "clean.jsonl", clean)
        for seed in seeds:
            write_rows(Path(tmp) / f"noisy{seed}.jsonl", inject_noise(clean, fraction, seed))
            for name, scores in (("clean.jsonl", out.clean), (f"noisy{seed}.jsonl", out.noisy)):
                train = {"path": f"{tmp}/{name}", "limit": None}
                # one fine-tune per request: here the seed also draws the noise
                req = replace(EvalRequest.from_config(cfg, *specs._replace(train=train), out_dir=tmp, seed=seed), seeds=1)
                res = evaluate(req)
                if res.status != "ok":
                    raise RuntimeError(res.traceback)
                scores.append(res.score)
                seconds.append(res.timings["finetune"] + res.timings["score"])
    out.seconds_per_eval = statistics.mean(seconds)
    return out


def main(overrides: list[str]) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[2] / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    f = measure(cfg, seeds=[0, 1, 2])
    for seed, c, n in zip([0, 1, 2], f.clean, f.noisy):
        print(f"seed {seed}: R(clean) {c:.4f}  R(noisy) {n:.4f}  gap {c - n:+.4f}")
    print(f"mean gap {f.mean_gap:+.4f}, seed SD {f.sd_gap:.4f}, ratio {f.mean_gap / f.sd_gap:.1f}; "
          f"{f.seconds_per_eval:.1f} s per evaluation (fine-tune + score)")


if __name__ == "__main__":
    main(sys.argv[1:])
