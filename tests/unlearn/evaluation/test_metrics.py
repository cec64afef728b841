import numpy as np
import pytest
import torch
from torch import nn

from unlearn.evaluation import accuracy, avg_gap, predict, split_metrics


class _Oracle(nn.Module):
    """Predicts the class stored in the first pixel; in train mode it would be wrong."""

    def forward(self, x):
        logits = nn.functional.one_hot((x[:, 0, 0, 0] * 255).round().long(), 3).float()
        return logits if not self.training else -logits


def test_accuracy_in_percent():
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 5.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 1])) == 75.0


def test_split_metrics_uses_eval_mode_and_restores_it():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    images = labels.view(-1, 1, 1, 1).to(torch.uint8)
    model = _Oracle().train()
    splits = {"forget": np.array([0, 1]), "remain": np.array([2, 3]), "test": np.array([4, 5])}
    metrics = split_metrics(model, images, labels, splits, batch_size=4)
    assert metrics["forget_acc"] == metrics["retain_acc"] == metrics["test_acc"] == 100.0
    assert 0 <= metrics["mia_svc"] <= 100
    assert model.training
    assert predict(model, images, batch_size=4).shape == (6, 3)


def test_avg_gap():
    ref = {"forget_acc": 90.0, "retain_acc": 100.0, "test_acc": 90.0, "mia_svc": 10.0}
    assert avg_gap(ref, ref) == 0.0
    other = {"forget_acc": 99.0, "retain_acc": 100.0, "test_acc": 87.0, "mia_svc": 14.0}
    assert avg_gap(other, ref) == pytest.approx(4.0)
