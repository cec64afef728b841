"""Accuracies, losses and MIA-efficacy on the forget / remain / test splits."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from unlearn.training import to_float, train_mode

@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, num_classes), float32, of ``model`` in eval mode for uint8 ``images``
    (N, C, H, W), computed on the model's device in full float32 (autocast and TF32 off,
    whatever the stage's precision: the attacks read these numbers) chunk by chunk;
    returned on the CPU, where the attacks and metrics run: one copy of N x C numbers."""
    from unlearn.device import exact_forward, model_device, to_batch

    device = model_device(model)
    with train_mode(model, False):
        logits = torch.cat([exact_forward(model, to_float(to_batch(chunk, device))) for chunk in images.split(batch_size)])
    return logits if logits.device.type == "cpu" else logits.cpu()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def split_metrics(logits: torch.Tensor, labels: torch.Tensor, splits: Mapping[str, np.ndarray],
                  svc_samples: int | None = None) -> dict[str, float]:
    """From a model's ``logits`` (N, C) on every sample: ``forget_acc``, ``retain_acc`` and
    ``test_acc`` (percent), the mean losses, ``mia_svc`` (SalUn's MIA-efficacy, percent)
    and ``mia_loss_auc`` (a cross-validated logistic regression on the loss, forget vs
    test, AUC in percent; at most ``svc_samples`` per class for the SVC, see
    :func:`~unlearn.evaluation.mia_svc.mia_svc`) over the forget, remain and test index arrays of ``splits``; each
    attack's 95% interval over samples as ``<key>_ci95`` (a half-width)."""
    from unlearn.evaluation.mia_svc import loss_attack, mia_svc, proportion_ci95, true_label_confidence

    metrics = {}
    confidence, losses = {}, {}
    for split, key in (("forget", "forget"), ("remain", "retain"), ("test", "test")):
        idx = torch.as_tensor(splits[split])
        metrics[f"{key}_acc"] = accuracy(logits[idx], labels[idx])
        losses[split] = nn.functional.cross_entropy(logits[idx].double(), labels[idx], reduction="none").numpy()
        metrics[f"{key}_loss"] = float(losses[split].mean())
        confidence[split] = true_label_confidence(logits[idx], labels[idx])
    metrics["mia_svc"] = mia_svc(confidence["remain"], confidence["test"], confidence["forget"], samples=svc_samples)
    metrics["mia_svc_ci95"] = proportion_ci95(metrics["mia_svc"], len(splits["forget"]))
    loss = loss_attack(losses["forget"], losses["test"])
    metrics["mia_loss_auc"], metrics["mia_loss_auc_ci95"] = loss["auc"], loss["auc_ci95"]
    return metrics
