"""``python -m autodp.accel.screening build [hydra overrides]``: build F and print its metrics."""
from __future__ import annotations

import json
import logging
from typing import Any

from autodp.accel.screening.build import build_screening, default_path, training_rows
from autodp.resources import compose_config, resolve_path


def compose(overrides: list[str]) -> Any:
    """The project config with ``overrides``; adds the screening group if config.yaml lacks it."""
    if "screening" not in compose_config([]):
        overrides = ["+screening=default", *overrides]
    return compose_config(overrides)


def main(argv: list[str]) -> int:
    """Build F from ``argv`` (``build`` and hydra overrides) and print its path and metrics; 2
    with a usage line otherwise."""
    if not argv or argv[0] != "build":
        print("usage: python -m autodp.accel.screening build [hydra overrides, e.g. dataset=cmd "
              "screening.path=/tmp/F screening/encoder=bge screening.encoder.path=/models/bge]")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = compose(argv[1:])
    rows = training_rows(cfg)
    out = resolve_path(cfg.screening.path) if cfg.screening.path else default_path(cfg.screening, rows, cfg.dataset.name)
    model = build_screening(rows, cfg.screening, out)
    print(json.dumps({"path": str(out), **model.metrics}, ensure_ascii=False, indent=2))
    return 0
