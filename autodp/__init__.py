"""autodp: LLM-AutoDP, an LLM agent that searches data-processing strategies without seeing data."""
import hashlib
import os

from omegaconf import OmegaConf

from autodp.resources import cache_root

# conf/config.yaml: a resumed run writes into its original dir, a fresh one gets a new dated dir.
OmegaConf.register_new_resolver("autodp_run_dir", lambda resume, fresh: resume or fresh, replace=True)
# conf/config.yaml: a fresh run dir's name ends in the launching process's id, fixed for its life.
OmegaConf.register_new_resolver("autodp_pid", lambda: os.getpid(), replace=True)
# conf/config.yaml: cache.dir defaults to a folder under the same root as every other cache.
OmegaConf.register_new_resolver("autodp_cache", lambda *parts: str(cache_root().joinpath(*parts)), replace=True)


def _short_dirname(name: str, limit: int = 120) -> str:
    """A multirun cell's folder name from its overrides: one folder, however many overrides or
    path values (cache.dir=/a/b) it holds. A name cut or stripped of separators ends in a hash
    of the full name, so two cells never share a folder."""
    safe = name.replace(os.sep, "_")
    if safe == name and len(name) <= limit:
        return name
    return f"{safe[:limit - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


# conf/config.yaml: hydra.sweep.subdir
OmegaConf.register_new_resolver("autodp_dirname", _short_dirname, replace=True)
