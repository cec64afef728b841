"""Evaluation of trained and unlearned models."""

from unlearn.evaluation.accuracy import accuracy, avg_gap, predict, split_metrics

__all__ = ["accuracy", "avg_gap", "predict", "split_metrics"]
