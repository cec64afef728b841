import numpy as np
import pytest
import torch
from torch import nn

from unlearn.evaluation import accuracy, avg_gap, predict, split_metrics
from unlearn.evaluation.gap import SVC_KEYS


class _Oracle(nn.Module):
    """Predicts the class stored in the first pixel; in train mode it would be wrong."""

    def forward(self, x):
        logits = nn.functional.one_hot((x[:, 0, 0, 0] * 255).round().long(), 3).float()
        return logits if not self.training else -logits


def test_accuracy_in_percent():
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 5.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 1])) == 75.0


def test_predict_uses_eval_mode_and_restores_it():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    images = labels.view(-1, 1, 1, 1).to(torch.uint8)
    model = _Oracle().train()
    logits = predict(model, images, batch_size=4)
    assert logits.shape == (6, 3) and (logits.argmax(1) == labels).all()
    assert model.training


def test_split_metrics_from_logits():
    labels = torch.arange(30) % 3
    logits = torch.nn.functional.one_hot(labels, 3).float() * 5
    logits[20:] = 0.5 * logits[20:]  # test samples: right but less confident
    splits = {"forget": np.arange(10), "remain": np.arange(10, 20), "test": np.arange(20, 30)}
    metrics = split_metrics(logits, labels, splits)
    assert metrics["forget_acc"] == metrics["retain_acc"] == metrics["test_acc"] == 100.0
    assert metrics["forget_loss"] < metrics["test_loss"]
    assert 0 <= metrics["mia_svc"] <= 100
    assert metrics["mia_loss_auc"] == 100.0  # the loss separates forget from test perfectly


def test_avg_gap_over_accuracies_and_an_attack():
    ref = {"forget_acc": 90.0, "retain_acc": 100.0, "test_acc": 90.0, "mia_rmia_auc": 50.0, "mia_svc": 10.0}
    assert avg_gap(ref, ref) == 0.0
    other = {"forget_acc": 99.0, "retain_acc": 100.0, "test_acc": 87.0, "mia_rmia_auc": 54.0, "mia_svc": 30.0}
    assert avg_gap(other, ref) == pytest.approx(4.0)
    assert avg_gap(other, ref, SVC_KEYS) == pytest.approx(8.0)
