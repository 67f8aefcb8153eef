"""Which cheap R(f) ranks data quality?

1. R(clean) vs R(40% noisy) over 3 seeds per evaluator setting (SETTINGS): same row count.
2. Strategies that remove rows on dataset=cmd_noisy (ROW_REMOVING): each against no processing
   with 3 paired seeds, s ± SE on validation, at matched training steps (the default) and at
   matched epochs, where removing rows also removes training steps.

Usage: python benchmarks/evaluator_fidelity.py [setting ...]   (default: all; `rows`: table 2 only)
Each setting is a list of Hydra overrides on the default config. Table 1 prints gap per seed,
mean, seed SD, their ratio (the test asks > 2) and seconds per evaluation; a setting's first run
pre-warms and caches its own base model (not counted in the seconds). Table 2 is journaled under
outputs/evaluator_fidelity, so a killed run resumes.
"""
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

import autodp  # noqa: F401 - registers the config resolvers
import autodp.ops  # noqa: F401 - registers the operators
from autodp.confirm import compare
from autodp.data.specs import data_specs
from autodp.evaluate.evaluator import evaluate
from autodp.evaluate.fidelity import measure
from autodp.evaluate.request import EvalRequest
from autodp.store import RunStore
from autodp.strategy import Strategy

SETTINGS = {
    "default (pre-warm 1 epoch, fine-tune 1 epoch)": [],
    "fine-tune 2 epochs, lr 2e-3": ["finetune.epochs=2", "finetune.lr=2e-3"],
    "pre-warm 4 epochs (base memorises the pool)": ["finetune.model.prewarm.epochs=4"],
}

# (strategy, overrides): cmd_noisy's planted duplicates, markup and cut answers, and the real ones
ROW_REMOVING = {
    "cleaning, matched steps (default)": ("cleaning", []),
    "cleaning, matched epochs": ("cleaning", ["finetune.budget=epochs"]),
    "dedup only, matched steps": ("cleaning", ["teams.cleaning=[minhash_dedup]"]),
    "dedup only, matched epochs": ("cleaning", ["teams.cleaning=[minhash_dedup]", "finetune.budget=epochs"]),
}

ROOT = Path(__file__).resolve().parent.parent
names = sys.argv[1:] or [*SETTINGS, "rows"]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def row_removing() -> None:
    print("| strategy on cmd_noisy | rows kept | r0 | s ± SE (validation) | s / SE |")
    print("|---|---|---|---|---|")
    for name, (strategy, overrides) in ROW_REMOVING.items():
        cfg = compose_cfg(["dataset=cmd_noisy", "eval.seeds=3", *overrides])
        out = ROOT / "outputs" / "evaluator_fidelity" / name.replace(" ", "_").replace(",", "")
        template = EvalRequest.from_config(cfg, *data_specs(cfg, out / "splits"), out_dir=str(out / "datasets"))
        c = compare(template, template.val, [Strategy.parse(strategy)], RunStore(out), lambda f, qs: map(f, qs),
                    evaluate, cfg.search.confirm_tie)
        arm = c["arms"][strategy]
        ratio = "-" if not arm["se"] else f"{arm['delta'] / arm['se']:+.1f}"
        print(f"| {name} | {arm['rows_out']} of 400 | {c['r0']:.4f} | {arm['delta']:+.4f} ± {arm['se'] or 0:.4f} | "
              f"{ratio} |", flush=True)


if "rows" in names:
    row_removing()
settings = [n for n in names if n != "rows"]
if settings:
    print("| setting | gap seed 0 | seed 1 | seed 2 | mean | SD | mean/SD | s per eval |")
    print("|---|---|---|---|---|---|---|---|")
for name in settings:
    cfg = compose_cfg(SETTINGS[name])
    f = measure(cfg, seeds=[0, 1, 2])
    gaps = " | ".join(f"{g:+.4f}" for g in f.gaps)
    print(f"| {name} | {gaps} | {f.mean_gap:+.4f} | {f.sd_gap:.4f} | {f.mean_gap / f.sd_gap:.1f} | "
          f"{f.seconds_per_eval:.1f} |", flush=True)
