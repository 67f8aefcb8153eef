import os
import shutil
import subprocess
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
# Where slurm/local-cluster.sh keeps its cluster (`make test` starts it when run as root).
SLURM_DIR = Path(os.environ.get("AUTODP_SLURM_DIR", "/tmp/autodp-slurm"))
# Set by .ci/run: a SLURM test that cannot run fails instead of skipping, so a green CI means the
# SLURM paths ran.
REQUIRE_SLURM = os.environ.get("AUTODP_REQUIRE_SLURM") == "1"
# The local Ray cluster that `make test` starts (slurm/local-ray.sh) and the Ray tests join; a test
# run by hand without it starts a Ray instance of its own (2 CPUs).
RAY_ADDRESS = os.environ.get("AUTODP_RAY_ADDRESS")
RAY = [f"process.address={RAY_ADDRESS}"] if RAY_ADDRESS else ["process.num_cpus=2"]


def pytest_configure(config: pytest.Config) -> None:
    # pyproject's `timeout` is read by pytest-timeout alone; without the plugin it would be
    # ignored with a mere warning and a hung test would hold CI forever.
    if not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError("pytest-timeout is not installed (it is in requirements/lock.txt): `make install`")


def slurm_unavailable(why: str) -> None:
    """Skip a SLURM test, saying why; fail it when AUTODP_REQUIRE_SLURM=1."""
    msg = f"SLURM cluster not available: {why} (start one as root: slurm/local-cluster.sh start)"
    if REQUIRE_SLURM:
        pytest.fail(f"{msg}; AUTODP_REQUIRE_SLURM=1 requires it", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def cmd_rows():
    from autodp.data.io import load_rows
    return load_rows(SAMPLES / "cmd" / "train.jsonl")


@pytest.fixture(scope="session")
def val_rows():
    from autodp.data.io import load_rows
    return load_rows(SAMPLES / "cmedqa2" / "eval.jsonl")


@pytest.fixture(scope="session")
def slurm_cluster() -> Path:
    """SLURM_CONF of a running cluster ($SLURM_CONF, else slurm/local-cluster.sh's), exported to
    this process so that submitit and child processes use it. Skips, saying why, without one
    (fails under AUTODP_REQUIRE_SLURM=1)."""
    conf = Path(os.environ.get("SLURM_CONF") or SLURM_DIR / "etc" / "slurm.conf")
    unavailable = slurm_unavailable
    if shutil.which("sinfo") is None:
        unavailable("no sinfo on PATH")
    if not conf.is_file():
        unavailable(f"no {conf}")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    # sinfo needs slurmctld; sacct needs slurmdbd, and submitit reads job states through it.
    outputs = []
    for cmd in (["sinfo", "-h", "-o", "%T"], ["sacct", "-n", "-X", "-S", "now-1minute"]):
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            unavailable(f"`{' '.join(cmd)}` gave no answer in 30 s")
        if r.returncode != 0:
            unavailable(f"`{' '.join(cmd)}` failed: {r.stderr.strip()[-300:]}")
        outputs.append(r.stdout)
    states = set(outputs[0].split())
    if not states & {"idle", "mixed", "allocated", "completing"}:
        unavailable(f"no node takes jobs (states: {', '.join(sorted(states)) or 'none'})")
    os.environ["SLURM_CONF"] = str(conf)
    return conf
