"""Accuracies on the forget / remain / test splits, and the gap to the retrained model."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from unlearn.training import to_float, train_mode

METRIC_KEYS = ("forget_acc", "retain_acc", "test_acc")


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, num_classes) of ``model`` in eval mode for uint8 ``images`` (N, C, H, W)."""
    with train_mode(model, False):
        return torch.cat([model(to_float(chunk)) for chunk in images.split(batch_size)])


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def split_metrics(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    splits: Mapping[str, np.ndarray],
    batch_size: int = 1024,
) -> dict[str, float]:
    """``forget_acc``, ``retain_acc`` and ``test_acc`` (percent) and the mean losses
    of ``model`` on the forget, remain and test index arrays of ``splits``."""
    logits = predict(model, images, batch_size)
    metrics = {}
    for split, key in (("forget", "forget"), ("remain", "retain"), ("test", "test")):
        idx = torch.as_tensor(splits[split])
        metrics[f"{key}_acc"] = accuracy(logits[idx], labels[idx])
        metrics[f"{key}_loss"] = nn.functional.cross_entropy(logits[idx], labels[idx]).item()
    return metrics


def avg_gap(metrics: Mapping[str, float], reference: Mapping[str, float], keys=METRIC_KEYS) -> float:
    """Mean absolute difference over ``keys`` between a model's metrics and the
    retrained model's (the "Avg Gap" of the unlearning papers; 0 is ideal)."""
    return float(np.mean([abs(metrics[k] - reference[k]) for k in keys]))
