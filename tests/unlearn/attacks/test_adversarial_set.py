import pytest
import torch

from unlearn.attacks import adversarial_set, calibrate_eps_init, choose_eps_init, pgd_l2
from unlearn.config import AdversarialConfig
from tests.unlearn.attacks.test_pgd import _trained


@pytest.fixture(scope="module")
def setup():
    return _trained()


def test_every_sample_becomes_adversarial_with_its_reported_budget(setup):
    model, x, y = setup
    found = adversarial_set(model, x, y, eps_init=0.05, steps=20)
    with torch.no_grad():
        predicted = model(found.images).argmax(1)
        clean_wrong = model(x).argmax(1) != y
    assert not found.capped.any()
    assert torch.equal(predicted, found.labels) and (found.labels != y).all()
    assert (found.distance <= found.eps + 1e-5).all()
    assert found.images.min() >= 0 and found.images.max() <= 1
    assert torch.equal(found.images[clean_wrong], x[clean_wrong]) and (found.eps[clean_wrong] == 0).all()
    grid = 0.05 * 2 ** torch.arange(11, dtype=torch.float32)
    assert all(torch.isclose(grid, e).any() for e in found.eps[~clean_wrong])


def test_reported_budget_is_minimal_on_the_grid(setup):
    """Half the reported budget, attacked from the clean image, fails for most samples."""
    model, x, y = setup
    found = adversarial_set(model, x, y, eps_init=0.05, steps=20)
    doubled = found.eps > 0.05
    half = pgd_l2(model, x[doubled], y[doubled], eps=found.eps[doubled] / 2, steps=20)
    with torch.no_grad():
        still_correct = (model(half).argmax(1) == y[doubled]).float().mean().item()
    assert still_correct > 0.8


def test_cap_is_reported(setup):
    model, x, y = setup
    found = adversarial_set(model, x, y, eps_init=1e-4, steps=2, max_doublings=0)
    assert found.capped.any()
    assert torch.equal(found.capped, found.labels == y)


def test_calibration_covers_the_requested_fraction(setup):
    model, x, y = setup
    eps = calibrate_eps_init(model, x, y, success=0.95, steps=20)
    found = adversarial_set(model, x, y, eps_init=eps, steps=20, max_doublings=0)
    assert (~found.capped).float().mean().item() >= 0.85
    with pytest.raises(ValueError, match="eps_init must be > 0"):
        adversarial_set(model, x, y, eps_init=0.0)


def test_default_eps_init_is_amuns_fixed_budget_and_null_calibrates(setup):
    model, x, y = setup
    assert AdversarialConfig().eps_init == 0.04
    assert choose_eps_init(model, x, y, AdversarialConfig(), seed=0) == 0.04
    assert choose_eps_init(model, x, y, AdversarialConfig(eps_init=0.3), seed=0) == 0.3
    calibrated = AdversarialConfig(eps_init=None, calibration_samples=len(x), calibration_steps=20)
    assert choose_eps_init(model, x, y, calibrated, seed=0) == calibrate_eps_init(model, x, y, success=0.95, steps=20)


def test_small_fixed_eps_init_spreads_samples_over_the_doubling_grid(setup):
    """From 0.04 the budgets found spread over several doublings (the closest on the grid);
    from the calibrated budget most samples succeed at the first one."""
    model, x, y = setup
    fixed = adversarial_set(model, x, y, eps_init=0.04, steps=20)
    calibrated = adversarial_set(model, x, y, eps_init=calibrate_eps_init(model, x, y, steps=20), steps=20)
    attacked = fixed.eps > 0
    assert len(fixed.eps[attacked].unique()) >= 4
    assert (fixed.eps[attacked] == fixed.eps[attacked].max()).float().mean() < 0.5
    first = calibrated.eps[attacked].min()
    assert (calibrated.eps[attacked] == first).float().mean() > 0.8
    assert fixed.distance[attacked].median() <= calibrated.distance[attacked].median()
