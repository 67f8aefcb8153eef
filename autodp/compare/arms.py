"""An arm of a comparison: a training set, named. Given as a strategy key applied to the run's
training set (``none`` included), a run dir (its ``export/``), an export dir, or a JSONL file;
``NAME=SPEC`` names it (else the key, or the file's folder or file name)."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from autodp.apply import export
from autodp.data.io import DataError, Row, load_rows
from autodp.evaluate.request import EvalRequest
from autodp.strategy import Strategy, StrategyError


class Arm(NamedTuple):
    name: str
    rows: list[Row]
    source: str  # what the arm was given as: the strategy key or the file read


def _data_file(spec: str) -> Path | None:
    path = Path(spec).expanduser()
    for candidate in (path / "export" / "train.jsonl", path / "train.jsonl", path):
        if candidate.is_file():
            return candidate
    if path.is_dir():
        raise DataError(path, None, None, "a directory without export/train.jsonl or train.jsonl; "
                                          "an arm is a strategy key, a run dir, an export dir or a JSONL file")
    return None


def resolve_arm(spec: str, template: EvalRequest, work_dir: Path) -> Arm:
    """``template`` is the run's no-processing request: a strategy arm is exported from it into
    ``work_dir/<key>`` (reusing CRM entries when the request has a cache)."""
    name, sep, given = spec.partition("=")
    if not sep or not re.fullmatch(r"[\w.-]+", name):  # an '=' inside a path (Hydra's sweep dirs) names nothing
        name, given = "", spec
    path = _data_file(given)
    if path is not None:
        return Arm(name or Path(given).name, load_rows(path), str(path))
    try:
        strategy = Strategy.parse(given)
    except StrategyError as e:
        raise DataError(given, None, None, f"neither a file nor a strategy key ({e})") from None
    out = work_dir / strategy.key.replace(">", "-")
    if not (out / "manifest.json").is_file():  # written last: a killed export is redone, a whole one kept
        export(replace(template, strategy=strategy.key), out)
    return Arm(name or strategy.key, load_rows(out / "train.jsonl"), strategy.key)
