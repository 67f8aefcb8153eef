"""One operator, one class, one interface (in the spirit of Data-Juicer), registered by name.

An operator takes a list of rows and returns a new list; it never mutates its input. Teams
are ordered lists of configured operators (``conf/teams``); ``run_op`` wraps any operator to
report rows in, rows out, rows changed and seconds.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, TypeVar

from autodp.data.io import TEXT_FIELDS, Row
from autodp.strategy import Team

OPERATORS: dict[str, type["Operator"]] = {}
O = TypeVar("O", bound=type["Operator"])


def register(name: str) -> Callable[[O], O]:
    def deco(cls: O) -> O:
        if name in OPERATORS:
            raise ValueError(f"operator {name!r} registered twice")
        cls.name = name
        OPERATORS[name] = cls
        return cls

    return deco


class TeamNotAvailable(RuntimeError):
    """A strategy uses a team that has no operators configured, or one that cannot run here."""


class Operator(ABC):
    """Base class. Subclasses set ``team`` and take their parameters as keyword arguments."""

    name: ClassVar[str]
    team: ClassVar[Team]
    # Parameters an operator may take from the evaluation it runs in (the fine-tune config, the
    # target examples, the raw pool) when its config entry does not set them.
    context_params: ClassVar[tuple[str, ...]] = ()
    # Parameters that count rows relative to the data's size (rows to add, a size threshold, a cap
    # on rows processed). Under DPS they are scaled to the sample (``scale_counts``), so that a 20%
    # sample is processed as the full set would be, at a fifth of the work.
    counts: ClassVar[tuple[str, ...]] = ()
    # Each row's output depends on that row alone (a mapper or a filter): the operator gives the
    # same rows on any split of the data, so an engine may run it on shards (autodp/process).
    row_local: ClassVar[bool] = False
    # The operator is ``select(rows, features(rows))`` with ``features`` row-local (one picklable
    # value per row, e.g. a MinHash signature) and ``select`` keeping the rows ``keep(features)``
    # says. ``buckets(feature)`` (e.g. LSH bands) are keys such that a row sharing none with
    # another is kept and changes nothing: an engine computes features and buckets on shards,
    # groups the buckets on the cluster, and calls ``keep`` on each group of rows linked through
    # shared buckets, in row order (a row's verdict depends on its group alone).
    row_features: ClassVar[bool] = False
    # The operator is ``choose(rows, scores)`` with ``scores = scorer()``: a state fitted once (a
    # warm-up), picklable, that scores each row on its own. An engine fits it here and scores
    # slices of the rows elsewhere (LESS on Ray actors).
    row_scores: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, rows: list[Row]) -> list[Row]:
        ...

    def params(self) -> dict[str, Any]:
        """The parameters that determine the output (part of a processed dataset's identity)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


@dataclass
class OpReport:
    op: str
    team: str
    rows_in: int
    rows_out: int
    rows_changed: int
    seconds: float
    stats: dict[str, Any]  # the operator's own counts (e.g. rewrites rejected, by reason); never text
    # True when this run reused the output from the CRM cache; the counts are those of the run that made it.
    cached: bool = field(default=False, kw_only=True)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(row: Row) -> tuple[str, ...]:
    return tuple(row[f] for f in TEXT_FIELDS)


def report(op: Operator, rows: list[Row], out: list[Row], seconds: float) -> OpReport:
    """Rows in, rows out, rows whose text ``op`` changed, seconds, and the operator's own counts."""
    before = {r["id"]: _text(r) for r in rows}
    changed = sum(1 for r in out if r["id"] in before and before[r["id"]] != _text(r))
    return OpReport(op.name, op.team.value, len(rows), len(out), changed, round(seconds, 4),
                    dict(getattr(op, "last_stats", {})))


def run_op(op: Operator, rows: list[Row]) -> tuple[list[Row], OpReport]:
    t0 = time.perf_counter()
    out = op(rows)
    return out, report(op, rows, out, time.perf_counter() - t0)


def scale_counts(spec: dict[str, Any] | str, ratio: float) -> dict[str, Any] | str:
    """A config entry with its operator's ``counts`` multiplied by ``ratio``, rounded up (a
    positive count stays at least 1; null stays null)."""
    if isinstance(spec, str):
        return spec
    (name, params), = spec.items()
    counts = OPERATORS[name].counts
    return {name: {k: math.ceil(v * ratio) if k in counts and isinstance(v, int) else v
                   for k, v in (params or {}).items()}}


def spec_name(spec: dict[str, Any] | str) -> str:
    """The operator a config entry names: ``{name: {params}}`` or a bare name."""
    return spec if isinstance(spec, str) else next(iter(spec))


def build_op(spec: dict[str, Any] | str, context: dict[str, Any] | None = None) -> Operator:
    """Build from a config entry: ``{name: {params}}`` or a bare name; ``context`` fills the
    operator's ``context_params`` that the entry leaves out."""
    if isinstance(spec, str):
        name, params = spec, {}
    else:
        if len(spec) != 1:
            raise ValueError(f"an operator entry has exactly one key (its name), got {list(spec)}")
        (name, params), = spec.items()
        params = dict(params or {})
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; registered: {sorted(OPERATORS)}")
    cls = OPERATORS[name]
    for key in cls.context_params:
        if key not in params and context and key in context:
            params[key] = context[key]
    return cls(**params)
