"""Answer NLL of the reference answers under the fine-tuned model (computed by
autodp/evaluate/finetune.answer_nll); per character compares across tokenizers, per token does not."""
from autodp.metrics.base import Metric, register

register(Metric("nll_per_char", higher_is_better=False, needs="model"))
register(Metric("nll_per_token", higher_is_better=False, needs="model"))
