"""Where things live: the project cache and files shipped inside PyPI packages."""
from __future__ import annotations

import fcntl
import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """``$AUTODP_CACHE`` or ``<repo>/.cache`` (git ignores it); not created here."""
    return Path(os.environ.get("AUTODP_CACHE") or PROJECT_ROOT / ".cache")


def cache_dir(*parts: str) -> Path:
    """A folder under the cache root, created if missing."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def cache_lock(entry: Path) -> Iterator[None]:
    """Hold a lock beside the cache entry ``entry`` while it is built: processes that need the
    same entry (the jobs of one SLURM array on a fresh cache) wait for the first one instead of
    each building it on the same cores. Re-check for the entry once inside."""
    lock = entry.with_name(f".{entry.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (some import heavy deps)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed (pip install it, or run `make install`)")
    return Path(next(iter(spec.submodule_search_locations)))


def cpu_threads(wanted: int | None = None) -> int:
    """Threads for torch: ``wanted`` (None: all), never more than the CPUs this process was given,
    which in a SLURM job is its ``--cpus-per-task``. Jobs side by side on a node each default to
    every core otherwise, and oversubscribed BLAS threads run several times slower than one each."""
    given = len(os.sched_getaffinity(0))
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        given = min(given, int(os.environ["SLURM_CPUS_PER_TASK"]))
    return max(1, min(wanted or given, given))


def resolve_path(spec: str) -> Path:
    """``pkg:NAME[/sub/path]`` points inside an installed package; anything else is a path."""
    if spec.startswith("pkg:"):
        name, _, rest = spec[4:].partition("/")
        return package_dir(name) / rest if rest else package_dir(name)
    return Path(spec).expanduser()


def compose_config(overrides: list[str]) -> Any:
    """The project's conf/config.yaml composed with ``overrides``, for the command-line tools
    that run outside ``launch.py``."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides)
