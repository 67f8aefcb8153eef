"""autodp entry point: `python launch.py [overrides]`, or `-m` for a Hydra multirun sweep."""
import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import autodp  # noqa: F401 - registers the config resolvers
from autodp.errors import UserError


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from pathlib import Path

    from autodp.run import run_task  # heavy imports only after Hydra parsed the command line

    logging.getLogger().setLevel(cfg.log_level)
    try:
        return run_task(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UserError as e:
        # The user's to fix: the message alone, not Hydra's traceback (SystemExit passes through
        # Hydra's error reporting untouched).
        print(f"autodp: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
