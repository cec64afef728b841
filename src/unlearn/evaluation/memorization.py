"""Memorisation scores from models that trained with and without each sample (Feldman and
Zhang, 2020): a sample is memorised when the models that saw it are confident on its label and
the models that did not are not."""

from __future__ import annotations

import numpy as np
import torch


def true_class_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Each sample's softmax probability of its own label, in float64."""
    probabilities = torch.softmax(logits.double(), dim=1)
    return probabilities.gather(1, labels.view(-1, 1).to(probabilities.device)).squeeze(1).cpu().numpy()


def memorization_scores(confidence: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per sample: the mean ``confidence`` (models x samples) over the models that trained on it
    (``keep``, the same shape, bool) minus the mean over those that did not; in [-1, 1]."""
    inside, outside = keep.sum(axis=0), (~keep).sum(axis=0)
    if (inside == 0).any() or (outside == 0).any():
        raise ValueError("every sample needs at least one model that trained on it and one that did not")
    return (np.where(keep, confidence, 0).sum(axis=0) / inside
            - np.where(keep, 0, confidence).sum(axis=0) / outside)
