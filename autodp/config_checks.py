"""Check a composed config before any work: every value in its range, with the key named, and no
settings that contradict each other. A value is checked whether or not its group is switched on
(``accel.dps.ratio`` under ``accel=none`` too), so a config that runs today still runs after
one more switch is flipped. An unknown search method is Hydra's error (conf/search lists them).
A key's legal names come from the module that reads it, so they are written once.
``Search`` checks its own arguments with the same rules (``check_values``, ``check_search``)."""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from omegaconf import DictConfig, OmegaConf

from autodp.errors import UserError
from autodp.evaluate.estimate import CORRECTIONS, PICKS
from autodp.evaluate.schedule import BUDGETS, ORDERS
from autodp.metrics import METRICS


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


def _one_of(key: str, names: Sequence[str]) -> Rule:
    return Rule(key, lambda v: v in names, " or ".join(repr(n) for n in names))


RULES = (
    Rule("search.max_rounds", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("search.max_strategies", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("search.budget", lambda v: _int(v) and v >= 1, "an integer >= 1 (null: no limit)", True),
    Rule("search.min_rounds", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    Rule("search.repeat_reasks", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    _one_of("search.pick", PICKS),
    Rule("search.z", lambda v: _number(v) and v > 0, "a number > 0"),
    _one_of("search.correction", CORRECTIONS),
    Rule("search.confirm_tie", lambda v: _number(v) and v >= 0, "a number >= 0"),
    Rule("dataset.train_limit", lambda v: _int(v) and v >= 1, "an integer >= 1 (null: every row)", True),
    Rule("dataset.val_rows", lambda v: _int(v) and v >= 0, "an integer >= 0", True),
    Rule("dataset.test_rows", lambda v: _int(v) and v >= 0, "an integer >= 0", True),
    # R(f) inside the search scores one fine-tuned model: by its likelihood of the references or by its
    # answers; a judge compares two arms' answers, which is task=compare's
    _one_of("eval.metric", [m.name for m in METRICS.values() if m.needs in ("model", "generations")]),
    Rule("eval.seeds", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("eval.val_limit", lambda v: _int(v) and v >= 1, "an integer >= 1 (null: every row)", True),
    Rule("eval.target_rows", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    Rule("eval.batch_size", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("accel.dps.ratio", lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    _one_of("finetune.order", ORDERS),
    _one_of("finetune.budget", BUDGETS),
    Rule("eval.generation.max_tokens", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("eval.generation.batch_size", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("compare.questions", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    Rule("max_row_bytes", lambda v: _int(v) and v >= 1, "an integer >= 1 (null: no limit)", True),
)


def check_values(values: Mapping[str, Any]) -> None:
    """Raise ConfigError, naming the key, on the first value out of its range; ``values`` maps
    config keys to values, and keys without a rule or absent are not checked."""
    for rule in RULES:
        if rule.key not in values:
            continue
        v = values[rule.key]
        if v is None and rule.nullable:
            continue
        if not rule.ok(v):
            raise ConfigError(f"{rule.key}={v!r}: expected {rule.expected}")


def check_search(pick: str, seeds: int) -> None:
    """Values each in range that together make no search."""
    if pick == "significant" and seeds < 2:
        raise ConfigError("search.pick=significant needs eval.seeds >= 2 (a standard error); "
                          "raise eval.seeds or set search.pick=top")


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError, naming the key, on the first value a run cannot use."""
    absent = object()  # keys a run saved by an older version lacks are not checked
    values = {r.key: OmegaConf.select(cfg, r.key, default=absent) for r in RULES}
    check_values({k: v for k, v in values.items() if v is not absent})
    check_search(cfg.search.pick, cfg.eval.seeds)
    if METRICS[cfg.eval.metric].needs == "generations" and not cfg.eval.get("generation"):
        raise ConfigError(f"eval.metric={cfg.eval.metric} scores the model's answers: it needs eval.generation "
                          "(max_tokens, batch_size), as in eval=rouge_l")
