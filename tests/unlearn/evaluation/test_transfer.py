import math

import torch
from torch import nn

from unlearn.evaluation.transfer import transfer_matrix


def _linear(weight):
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(weight))
    return model


def test_identical_models_transfer_fully_and_orthogonal_ones_do_not():
    x = torch.tensor([[[[0.9, 0.1]]], [[[0.1, 0.9]]]])
    y = torch.tensor([0, 1])
    a = _linear([[1.0, -1.0], [-1.0, 1.0]])
    b = _linear([[1.0, -1.0], [-1.0, 1.0]])
    rates = transfer_matrix({"a": a}, {"a": a, "b": b}, x, y, eps=1.0, steps=20)
    assert rates["rate"]["a"] == {"a": 100.0, "b": 100.0} == rates["rate_unconditional"]["a"]
    small = transfer_matrix({"a": a}, {"b": b}, x, y, eps=0.05, steps=5)
    assert small["rate_unconditional"]["a"]["b"] == 0.0
    assert math.isnan(small["rate"]["a"]["b"])  # nothing fooled the source
