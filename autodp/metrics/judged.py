"""The paper's headline metric: the share of test questions on which a judge prefers our arm's
answer, in both orders (autodp/judge)."""
from autodp.metrics.base import Metric, register

register(Metric("judge_win_rate", higher_is_better=True, needs="judge"))
