import math

import torch
from torch import nn

from unlearn.attacks import pgd_l2, pgd_linf
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
    rates = transfer_matrix({"a": a}, {"a": a, "b": b}, x, y, lambda m, i, t: pgd_l2(m, i, t, eps=1.0, steps=20))
    assert rates["rate"]["a"] == {"a": 100.0, "b": 100.0} == rates["rate_unconditional"]["a"]
    small = transfer_matrix({"a": a}, {"b": b}, x, y, lambda m, i, t: pgd_l2(m, i, t, eps=0.05, steps=5))
    assert small["rate_unconditional"]["a"]["b"] == 0.0
    assert math.isnan(small["rate"]["a"]["b"])  # nothing fooled the source


def test_linf_pgd_stays_in_the_box_and_fools_a_linear_model():
    x = torch.tensor([[[[0.6, 0.4]]], [[[0.4, 0.6]]]])
    y = torch.tensor([0, 1])
    model = _linear([[1.0, -1.0], [-1.0, 1.0]])
    generator = torch.Generator().manual_seed(0)
    adversarial = pgd_linf(model, x, y, eps=0.15, steps=20, generator=generator)
    assert (adversarial - x).abs().max() <= 0.15 + 1e-6 and adversarial.min() >= 0 and adversarial.max() <= 1
    assert (model(adversarial).argmax(1) != y).all()  # a 0.2 margin falls to 0.15 per pixel
    assert (pgd_linf(model, x, y, eps=0.05, steps=20, generator=generator).sub(x).abs().max() <= 0.05 + 1e-6)
    assert (model(pgd_linf(model, x, y, eps=0.05, steps=20)).argmax(1) == y).all()  # too small a box
    rates = transfer_matrix({"a": model}, {"a": model}, x, y, lambda m, i, t: pgd_linf(m, i, t, eps=0.15, steps=20))
    assert rates["rate"]["a"]["a"] == 100.0


def test_random_directions_keep_each_perturbation_s_norm():
    from unlearn.evaluation.transfer import random_like

    perturbation = torch.randn(5, 1, 4, 4) * torch.arange(1, 6).view(5, 1, 1, 1)
    l2 = random_like(perturbation, "l2", torch.Generator().manual_seed(0))
    assert torch.allclose(l2.flatten(1).norm(dim=1), perturbation.flatten(1).norm(dim=1))
    linf = random_like(perturbation, "linf", torch.Generator().manual_seed(0))
    assert torch.allclose(linf.abs().flatten(1).amax(1), perturbation.abs().flatten(1).amax(1))
    assert torch.allclose(linf.abs(), linf.abs().flatten(1).amax(1).view(5, 1, 1, 1).expand_as(linf))


def test_the_chance_level_of_a_linear_model_is_below_its_transfer_rate():
    # a direction that flips the linear model needs to point along (-1, 1); random ones mostly do not
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(200, 1, 1, 2, generator=generator) * 0.2 + torch.tensor([0.55, 0.45]).view(1, 1, 1, 2)
    y = torch.zeros(200, dtype=torch.int64)
    model = _linear([[1.0, -1.0], [-1.0, 1.0]])
    rates = transfer_matrix({"a": model}, {"a": model}, x, y, lambda m, i, t: pgd_l2(m, i, t, eps=0.5, steps=20),
                            "l2", generator)
    assert rates["rate"]["a"]["a"] == 100.0 and rates["rate_random"]["a"]["a"] < 70.0
