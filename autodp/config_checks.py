"""Check a composed config before any work: every value in its range, with the key named, and no
settings that contradict each other. A value is checked whether or not its group is switched on
(``accel.dps.ratio`` under ``accel=none`` too), so a config that runs today still runs after
one more switch is flipped. An unknown search method is Hydra's error (conf/search lists them)."""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from omegaconf import DictConfig, OmegaConf

from autodp.errors import UserError
from autodp.search.loop import check_settings


class ConfigError(UserError):
    """A config value out of its range; the message names the key."""


class Rule(NamedTuple):
    key: str
    ok: Callable[[Any], bool]
    expected: str
    nullable: bool = False  # null means "no limit" for this key


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


RULES = (
    Rule("search.max_rounds", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("search.max_strategies", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("search.budget", lambda v: _int(v) and v >= 1, "an integer >= 1 (null: no limit)", True),
    Rule("search.min_rounds", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    Rule("search.repeat_reasks", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    Rule("search.pick", lambda v: v in ("top", "significant"), "'top' or 'significant'"),
    Rule("search.z", lambda v: _number(v) and v > 0, "a number > 0"),
    Rule("search.correction", lambda v: v in ("bonferroni", "none"), "'bonferroni' or 'none'"),
    Rule("search.confirm_tie", lambda v: _number(v) and v >= 0, "a number >= 0"),
    Rule("dataset.train_limit", lambda v: _int(v) and v >= 1, "an integer >= 1 (null: every row)", True),
    Rule("dataset.val_rows", lambda v: _int(v) and v >= 0, "an integer >= 0", True),
    Rule("dataset.test_rows", lambda v: _int(v) and v >= 0, "an integer >= 0", True),
    Rule("eval.seeds", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("eval.val_limit", lambda v: _int(v) and v >= 1, "an integer >= 1 (null: every row)", True),
    Rule("eval.target_rows", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    Rule("eval.batch_size", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("accel.dps.ratio", lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    Rule("finetune.order", lambda v: v in ("shuffle", "row_hash"), "'shuffle' or 'row_hash'"),
    Rule("max_row_bytes", lambda v: _int(v) and v >= 1, "an integer >= 1 (null: no limit)", True),
)


def _check_ranges(cfg: DictConfig) -> None:
    for rule in RULES:
        # keys a run saved by an older version lacks are not checked
        if OmegaConf.select(cfg, rule.key, default="__absent__") == "__absent__":
            continue
        v = OmegaConf.select(cfg, rule.key)
        if v is None and rule.nullable:
            continue
        if not rule.ok(v):
            raise ConfigError(f"{rule.key}={v!r}: expected {rule.expected}")


def _check_combinations(cfg: DictConfig) -> None:
    """Values each in range that together make no search (the rules of autodp.search.check_settings)."""
    s = cfg.search
    try:
        check_settings(s.pick, cfg.eval.seeds, s.max_rounds, s.get("budget"))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError, naming the key, on the first value a run cannot use."""
    _check_ranges(cfg)
    _check_combinations(cfg)
