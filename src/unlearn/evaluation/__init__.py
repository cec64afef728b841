"""Evaluation of trained and unlearned models.

Names are imported on first use, so that ``unlearn.evaluation.gap`` (used by the
report, which reads only JSON) does not import torch.
"""

import importlib

_SOURCES = {"accuracy": "metrics", "predict": "metrics", "split_metrics": "metrics",
            "avg_gap": "gap", "METRIC_KEYS": "gap"}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name in _SOURCES:
        return getattr(importlib.import_module(f"unlearn.evaluation.{_SOURCES[name]}"), name)
    raise AttributeError(f"module 'unlearn.evaluation' has no attribute {name!r}")
