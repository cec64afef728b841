"""Accuracies, losses and MIA-efficacy on the forget / remain / test splits."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from unlearn.training import to_float, train_mode

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
    """``forget_acc``, ``retain_acc`` and ``test_acc`` (percent), the mean losses, and
    ``mia_svc`` (SalUn's MIA-efficacy, percent) of ``model`` on the forget, remain and
    test index arrays of ``splits``."""
    from unlearn.evaluation.mia_svc import mia_svc, true_label_confidence

    logits = predict(model, images, batch_size)
    metrics = {}
    confidence = {}
    for split, key in (("forget", "forget"), ("remain", "retain"), ("test", "test")):
        idx = torch.as_tensor(splits[split])
        metrics[f"{key}_acc"] = accuracy(logits[idx], labels[idx])
        metrics[f"{key}_loss"] = nn.functional.cross_entropy(logits[idx], labels[idx]).item()
        confidence[split] = true_label_confidence(logits[idx], labels[idx])
    metrics["mia_svc"] = mia_svc(confidence["remain"], confidence["test"], confidence["forget"])
    return metrics
