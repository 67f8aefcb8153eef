"""One registry of metrics, read by R(f) inside the search (``eval.metric``) and by task=compare.

A metric says which way is better and what it needs: ``model`` (a fine-tuned model scored on the
reference answers), ``generations`` (its answers compared with the references) or ``judge`` (a
judge model comparing two arms' answers). A new metric is one module here that registers itself
(base.register), imported below.
"""
from autodp.metrics import judged, nll, overlap  # noqa: F401 - each registers its metrics
from autodp.metrics.base import METRICS, Metric

__all__ = ["METRICS", "Metric"]
