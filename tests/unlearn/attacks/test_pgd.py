import torch

from unlearn.attacks import pgd_l2
from unlearn.config import TrainConfig
from unlearn.data import load_dataset
from unlearn.evaluation import accuracy
from unlearn.models import create_model
from unlearn.training import to_float, train_


def _trained():
    data = load_dataset("digits")
    model = create_model("small_cnn", in_channels=1, num_classes=10, mean=[0.3], std=[0.3], seed=0, width=8)
    train_(model, data.images[:800], data.labels[:800], TrainConfig(epochs=3, batch_size=32),
           generator=torch.Generator().manual_seed(0))
    return model.eval(), to_float(data.images[800:900]), data.labels[800:900]


def test_pgd_stays_in_the_ball_and_pixel_range_and_lowers_accuracy():
    model, x, y = _trained()
    with torch.no_grad():
        clean = accuracy(model(x), y)
    for eps in (0.5, 2.0):
        adv = pgd_l2(model, x, y, eps=eps, steps=20)
        assert ((adv - x).flatten(1).norm(dim=1) <= eps + 1e-5).all()
        assert adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            robust = accuracy(model(adv), y)
        assert robust <= clean
    assert robust < clean - 20  # eps = 2 on 8x8 digits breaks most predictions
    assert not model.training


def test_eps_zero_returns_the_input_exactly():
    model, x, y = _trained()
    assert torch.equal(pgd_l2(model, x, y, eps=0.0), x)


def test_stop_when_wrong_freezes_misclassified_samples():
    model, x, y = _trained()
    adv = pgd_l2(model, x, y, eps=3.0, steps=30, stop_when_wrong=True)
    with torch.no_grad():
        wrong_at_start = model(x).argmax(1) != y
    assert torch.equal(adv[wrong_at_start], x[wrong_at_start])


def test_per_sample_budgets_and_continuing_from_a_start():
    model, x, y = _trained()
    eps = torch.linspace(0.0, 2.0, len(x))
    adv = pgd_l2(model, x, y, eps=eps, steps=10)
    assert torch.equal(adv[0], x[0])
    assert ((adv - x).flatten(1).norm(dim=1) <= eps + 1e-5).all()
    further = pgd_l2(model, x, y, eps=2 * eps, steps=10, start=adv)
    assert ((further - x).flatten(1).norm(dim=1) <= 2 * eps + 1e-5).all()
    with torch.no_grad():
        assert accuracy(model(further), y) <= accuracy(model(adv), y)


def test_the_accelerator_path_masks_instead_of_syncing_and_moves_every_sample_alike():
    """The masked path (CUDA: no nonzero, no boolean indexing per step) follows each sample's
    trajectory exactly as the compacting CPU path does, with and without early stopping."""
    from unlearn.attacks import pgd
    from unlearn.training import train_mode

    model, x, y = _trained()
    eps = torch.linspace(0, 1.5, len(x))
    with train_mode(model, False), torch.enable_grad():
        for stop in (False, True):
            compacted = pgd._compacting(model, x, y, x.clone(), eps, eps / 10, 15, stop)
            masked = pgd._masked(model, x, y, x.clone(), eps, eps / 10, 15, stop, check_every=4)
            assert torch.allclose(compacted, masked, atol=1e-6)
            assert (compacted != x).any()
