import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("AUTODP_CACHE", str(ROOT / ".cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
SAMPLES = ROOT / "autodp" / "data" / "samples"


@pytest.fixture(scope="session")
def cmd_rows():
    from autodp.data.io import load_rows
    return load_rows(SAMPLES / "cmd" / "train.jsonl")


@pytest.fixture(scope="session")
def val_rows():
    from autodp.data.io import load_rows
    return load_rows(SAMPLES / "cmedqa2" / "eval.jsonl")
