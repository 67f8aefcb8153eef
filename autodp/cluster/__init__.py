"""Executors run evaluation requests: in-process here, as SLURM job arrays on a cluster."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from tqdm.auto import tqdm


class LocalExecutor:
    """Runs requests one after another in this process (2-core CPU default)."""

    def map(self, fn: Callable[[Any], Any], requests: Sequence[Any], desc: str = "evaluate") -> Iterator[Any]:
        """Yields each result as soon as it exists, so the caller journals it before the next starts."""
        if not requests:
            return
        for req in tqdm(requests, desc=desc, unit="strategy", leave=False):
            yield fn(req)


def build_executor(cfg: Any) -> LocalExecutor:
    if cfg.kind == "local":
        return LocalExecutor()
    raise NotImplementedError(f"cluster.kind={cfg.kind!r} is not implemented yet (issue #5: submitit/SLURM)")
