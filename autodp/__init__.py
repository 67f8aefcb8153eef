"""autodp: LLM-AutoDP, an LLM agent that searches data-processing strategies without seeing data."""
from omegaconf import OmegaConf

from autodp.resources import cache_root

# conf/config.yaml: a resumed run writes into its original dir, a fresh one gets a new dated dir.
OmegaConf.register_new_resolver("autodp_run_dir", lambda resume, fresh: resume or fresh, replace=True)
# conf/config.yaml: cache.dir defaults to a folder under the same root as every other cache.
OmegaConf.register_new_resolver("autodp_cache", lambda *parts: str(cache_root().joinpath(*parts)), replace=True)
