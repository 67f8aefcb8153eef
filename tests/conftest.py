import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("AUTODP_CACHE", str(ROOT / ".cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
# W&B files stay in each run dir, where the tests read them back; its caches and artifact staging
# stay out of $HOME.
os.environ.pop("WANDB_DIR", None)
os.environ.setdefault("WANDB_CACHE_DIR", os.path.join(os.environ["AUTODP_CACHE"], "wandb-cache"))
os.environ.setdefault("WANDB_DATA_DIR", os.path.join(os.environ["AUTODP_CACHE"], "wandb-data"))
os.environ.setdefault("MPLCONFIGDIR", os.path.join(os.environ["AUTODP_CACHE"], "mpl"))
SAMPLES = ROOT / "autodp" / "data" / "samples"


@pytest.fixture(scope="session")
def cmd_rows():
    from autodp.data.io import load_rows
    return load_rows(SAMPLES / "cmd" / "train.jsonl")


@pytest.fixture(scope="session")
def val_rows():
    from autodp.data.io import load_rows
    return load_rows(SAMPLES / "cmedqa2" / "eval.jsonl")
