"""D_A for a confidently fitted model (issue 27): the margin loss takes over where the
cross-entropy's gradient vanishes, budgets stop at the input space's diameter, and AMUN
leaves a capped sample out of D_A instead of refusing the set."""

import copy
import math

import pytest
import torch
from torch.nn import functional as F

import unlearn.attacks.pgd as pgd
from unlearn.attacks import AdversarialSet, adversarial_set
from unlearn.config import FinetuneConfig
from unlearn.unlearning import METHODS, ForgetTask
from tests.unlearn.attacks.test_pgd import _trained


def _gaps(model, x, y):
    with torch.no_grad():
        logits = model(x)
    top = logits.scatter(1, y.view(-1, 1), float("-inf")).amax(1)
    return logits.gather(1, y.view(-1, 1)).squeeze(1) - top


@pytest.fixture(scope="module")
def models():
    """The small digits CNN and the same network with its logits scaled 40x: the same
    decision boundary, fitted so confidently that the correctly classified samples have
    logit gaps above 30 (p_y == 1 in float32)."""
    model, x, y = _trained()
    confident = copy.deepcopy(model)
    last = [m for m in confident.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(40.0)
        last.bias.mul_(40.0)
    keep = _gaps(confident, x, y) > 30
    return model, confident, x[keep], y[keep]


def test_cross_entropy_vanishes_on_the_confident_model_and_the_margin_does_not(models):
    _, confident, x, y = models
    assert len(y) >= 40
    x = x.clone().requires_grad_(True)
    logits = confident(x)
    (ce_grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x, retain_graph=True)
    (grad,) = torch.autograd.grad(pgd.attack_loss(logits, y), x)
    assert (F.cross_entropy(logits, y, reduction="none") == 0).float().mean() > 0.9
    assert ce_grad.flatten(1).norm(dim=1).max() < 1e-6
    assert grad.flatten(1).norm(dim=1).min() > 1e-2


def test_confident_model_gets_the_nearest_adversarial_examples(models):
    model, confident, x, y = models
    plain = adversarial_set(model, x, y, eps_init=0.05, steps=20)
    found = adversarial_set(confident, x, y, eps_init=0.05, steps=20)
    assert not found.capped.any() and (found.labels != y).all()
    assert found.eps.max() <= math.sqrt(x[0].numel())
    # same boundary: the budgets match the unscaled model's within one doubling
    assert ((found.eps / plain.eps).log2().abs() <= 1).float().mean() >= 0.9


def test_cross_entropy_alone_would_cap_them(models, monkeypatch):
    """What the margin fallback fixes: ascending the cross-entropy only (AMUN's code)."""
    _, confident, x, y = models
    monkeypatch.setattr(pgd, "attack_loss", lambda logits, labels: F.cross_entropy(logits, labels, reduction="sum"))
    found = adversarial_set(confident, x, y, eps_init=0.05, steps=20)
    assert found.capped.float().mean() > 0.5


def test_budgets_stop_at_the_diameter_of_the_input_space():
    """A model that ignores its input is never fooled: its samples are capped at the
    diameter of [0, 1]^64 (8), not at eps_init * 2^max_doublings (0.05 * 2^20)."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.arange(10, 0, -1).float())  # always class 0
    x, y = torch.rand(6, 1, 8, 8), torch.zeros(6, dtype=torch.int64)
    found = adversarial_set(model, x, y, eps_init=0.05, steps=3, max_doublings=20)
    assert found.capped.all() and torch.equal(found.eps, torch.full((6,), 8.0))


def test_amun_leaves_capped_samples_out_of_d_a(monkeypatch):
    import unlearn.unlearning.methods as methods

    seen = {}
    monkeypatch.setattr(methods, "train_", lambda model, x, y, cfg, **kw: seen.update(x=x, y=y))
    images, labels = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8), torch.arange(10) % 3
    capped = torch.tensor([True, False, False, True])
    found = AdversarialSet(torch.rand(4, 1, 8, 8), torch.tensor([9, 1, 2, 9]), torch.ones(4), torch.ones(4), capped)
    task = ForgetTask(images, labels, torch.arange(4), torch.arange(4, 10), 10, found)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    METHODS.get("amun_no_remain").run(model, task, FinetuneConfig(), torch.Generator().manual_seed(0))
    assert len(seen["x"]) == 4 + 2  # D_F's four rows, D_A's two uncapped ones
    assert seen["y"].tolist() == [*labels[:4].tolist(), 1, 2]
