"""The binary screening model F (paper 3.3.1): does a row need processing (noisy) or not (clean)?

The paper labels 200k conversations with Qwen3-32B and distils the labels into Qwen2.5-7B. No
strong Chinese LLM runs offline here, so F starts from *rule-based weak labels* (rules.py): each
rule is a small named check for one kind of noise really present in CMD and cMedQA2 (see
shared/data/README.md). Rules are exact for what they describe but see only surface form, so F
adds a classifier for the rest (classifier.py): class-balanced logistic regression over
[question embedding, answer embedding, lengths, question-answer cosine] (features.py), trained
to separate rule-clean rows from copies of them with *known noise* injected (by default answers
swapped between rows; build.py).

    F(row) = noisy  iff  some rule fires  or  classifier(row) >= threshold

The threshold is chosen on a validation split; a held-out split scores F twice: (a) against the
weak labels, (b) against known noise injected into held-out rule-clean rows, where the truth is
exact. Only rule-clean rows are embedded, so inference costs one encoder pass over about half
of CMD plus a dot product.

Build: ``python -m autodp.accel.screening build [hydra overrides]`` (cli.py). Only counts and
metrics are logged or saved, never row text. An LLM judge as the labeller (the paper's route) is
not wired in: no strong Chinese LLM runs offline here, so it could not be tested.

Modules, each importing only those before it: rules -> features -> classifier -> build -> cli.
"""
from autodp.accel.screening.build import (NOISE_KINDS, build_screening, default_path, evaluate_holdout,
                                          inject_known_noise, screening_model, screening_model_path,
                                          split_by_question, training_rows)
from autodp.accel.screening.classifier import ScreeningModel, best_threshold, binary_metrics, fit_logreg
from autodp.accel.screening.cli import compose, main
from autodp.accel.screening.rules import RULES, rule_hits, weak_labels

__all__ = ["NOISE_KINDS", "RULES", "ScreeningModel", "best_threshold", "binary_metrics", "build_screening",
           "compose", "default_path", "evaluate_holdout", "fit_logreg", "inject_known_noise", "main",
           "rule_hits", "screening_model", "screening_model_path", "split_by_question", "training_rows",
           "weak_labels"]
