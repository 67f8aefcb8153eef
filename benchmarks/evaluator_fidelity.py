"""Which cheap R(f) ranks data quality? R(clean) vs R(40% noisy) over 3 seeds per evaluator setting.

Usage: python benchmarks/evaluator_fidelity.py [setting ...]   (default: all settings below)
Each setting is a list of Hydra overrides on the default config. Prints gap per seed, mean,
seed SD, their ratio (the test asks > 2) and seconds per evaluation. A setting's first run
pre-warms and caches its own base model (not counted in the seconds).
"""
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

import autodp  # noqa: F401 - registers the config resolvers
from autodp.evaluate.fidelity import measure

SETTINGS = {
    "default (pre-warm 1 epoch, fine-tune 1 epoch)": [],
    "fine-tune 2 epochs, lr 2e-3": ["finetune.epochs=2", "finetune.lr=2e-3"],
    "pre-warm 4 epochs (base memorises the pool)": ["finetune.model.prewarm.epochs=4"],
}

names = sys.argv[1:] or list(SETTINGS)
conf = Path(__file__).resolve().parent.parent / "conf"
print("| setting | gap seed 0 | seed 1 | seed 2 | mean | SD | mean/SD | s per eval |")
print("|---|---|---|---|---|---|---|---|")
for name in names:
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=SETTINGS[name])
    f = measure(cfg, seeds=[0, 1, 2])
    gaps = " | ".join(f"{g:+.4f}" for g in f.gaps)
    print(f"| {name} | {gaps} | {f.mean_gap:+.4f} | {f.sd_gap:.4f} | {f.mean_gap / f.sd_gap:.1f} | "
          f"{f.seconds_per_eval:.1f} |", flush=True)
