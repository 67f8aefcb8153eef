"""The environment under test is the lock: what `make` installs on any later day is what was tested.

`make install` installs requirements/lock.txt (or $AUTODP_LOCK) with --no-deps; these tests fail,
naming each package, when the installed set drifts from it or the lock leaves pyproject's ranges.
"""
import os
import re
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCKS = [ROOT / "requirements" / "lock.txt", ROOT / "requirements" / "lock-gpu.txt"]
# pip freeze leaves these out: the installer and the venv's own build tools.
NOT_LOCKED = {"pip", "setuptools", "wheel", "distribute", "autodp"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def read_lock(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = PIN.match(line)
        if m:
            name = canonicalize_name(m[1])
            assert name not in pins, f"{path.name}:{lineno}: {name} pinned twice"
            pins[name] = m[2]
    return pins


def installed() -> dict[str, str]:
    """What the environment's site-packages hold, as pip freeze sees it: not what sys.path gains
    at run time (importing setuptools puts its vendored packages there)."""
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions(path=paths)}


def drift(lock: dict[str, str], have: dict[str, str]) -> list[str]:
    out = []
    for name in sorted(lock.keys() | have.keys()):
        if name in NOT_LOCKED:
            continue
        want, got = lock.get(name), have.get(name)
        if want is None:
            out.append(f"{name}=={got} is installed but not in the lock")
        elif got is None:
            out.append(f"{name}=={want} is locked but not installed")
        elif Version(want) != Version(got):
            out.append(f"{name}: locked {want}, installed {got}")
    return out


def test_installed_packages_equal_the_lock():
    lock_path = Path(os.environ.get("AUTODP_LOCK", ROOT / "requirements" / "lock.txt"))
    problems = drift(read_lock(lock_path), installed())
    assert not problems, (f"the environment differs from {lock_path.name} (`make install` rebuilds "
                          "it; `make lock` re-resolves on purpose):\n  " + "\n  ".join(problems))


def test_drift_names_each_differing_package():
    lock = {"a": "1.0", "b": "2.0", "c": "3.0+cpu"}
    have = {"a": "1.0", "b": "2.1", "d": "0.1", "pip": "26.3", "c": "3.0+cpu"}
    assert drift(lock, have) == ["b: locked 2.0, installed 2.1", "d==0.1 is installed but not in the lock"]
    assert drift(lock, {"a": "1.0"}) == ["b==2.0 is locked but not installed", "c==3.0+cpu is locked but not installed"]


@pytest.mark.parametrize("lock_path", LOCKS, ids=[p.name for p in LOCKS])
def test_lock_satisfies_the_ranges_in_pyproject(lock_path):
    """pyproject.toml states compatibility; a lock outside it means one of them is stale."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra, extra_reqs in project["optional-dependencies"].items():
        # The CPU lock leaves out the vllm extra (it needs a CUDA torch); the GPU lock has it.
        if extra != "vllm" or "gpu" in lock_path.name:
            reqs += [Requirement(r) for r in extra_reqs]
    pins = read_lock(lock_path)
    env = {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}
    bad = []
    for req in reqs:
        if req.marker and not req.marker.evaluate(env):
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None or not req.specifier.contains(pinned, prereleases=True):
            bad.append(f"{req} -> {pinned}")
    assert not bad, f"{lock_path.name} is stale against pyproject.toml (run `make lock`): {bad}"
