"""autodp entry point: `python launch.py [overrides]`, or `-m` for a Hydra multirun sweep."""
import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import autodp  # noqa: F401 - registers the config resolvers


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from pathlib import Path

    from autodp.run import TASKS  # heavy imports only after Hydra parsed the command line

    logging.getLogger().setLevel(cfg.log_level)
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r}: known tasks are {', '.join(TASKS)}")
    return TASKS[cfg.task](cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
