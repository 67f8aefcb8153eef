"""What a metric is, and the registry each metric module adds itself to."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

NEEDS = ("model", "generations", "judge")


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    needs: str
    # generations: (answers, references) -> one score per question; None where another module computes it
    per_question: Callable[[Sequence[str], Sequence[str]], list[float]] | None = None

    def signed(self, value: float) -> float:
        """The value with higher = better, as a score r is."""
        return value if self.higher_is_better else -value


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    if metric.needs not in NEEDS:
        raise ValueError(f"metric {metric.name}: needs must be one of {NEEDS}, not {metric.needs!r}")
    METRICS[metric.name] = metric
    return metric
