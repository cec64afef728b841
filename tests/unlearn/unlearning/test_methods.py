import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from unlearn.attacks import adversarial_set
from unlearn.config import L1SparseConfig, UnlearnClassConfig, UnlearnConfig
from unlearn.data import load_dataset
from unlearn.models import create_model
from unlearn.config import TrainConfig
from unlearn.training import Callback, to_float, train_
from unlearn.unlearning import METHODS, ForgetTask, FreezeOutsideMask, saliency_mask
from unlearn.unlearning import methods
from unlearn.unlearning.methods import RandomWrongLabels, l1_weight


@pytest.fixture(scope="module")
def setup():
    """A small CNN fitted to 300 digits, 30 of them to forget, with their D_A."""
    data = load_dataset("digits")
    images, labels = data.images[:400], data.labels[:400]
    model = create_model("small_cnn", in_channels=1, num_classes=10, mean=[0.3], std=[0.3], seed=0, width=8)
    train_(model, images[:300], labels[:300], TrainConfig(epochs=8, batch_size=32),
           generator=torch.Generator().manual_seed(0))
    forget, remain = torch.arange(30), torch.arange(30, 300)
    found = adversarial_set(model, to_float(images[forget]), labels[forget], eps_init=0.5, steps=10)
    return model.eval(), ForgetTask(images, labels, forget, remain, 10, found)


def _settings(name: str):
    return getattr(UnlearnConfig(), name).model_copy(update={"epochs": 2, "batch_size": 64})


def forget_loss(model, task):
    with torch.no_grad():
        return F.cross_entropy(model.eval()(to_float(task.images[task.forget])), task.labels[task.forget]).item()


RANDOM_TRACK = [name for name in METHODS.names() if "random" in METHODS.get(name).tracks]


def test_registry_and_params_sections_name_the_same_methods():
    assert RANDOM_TRACK == sorted(UnlearnConfig.model_fields)
    assert [n for n in METHODS.names() if "class" in METHODS.get(n).tracks] == sorted(UnlearnClassConfig.model_fields)


@pytest.mark.parametrize("name", RANDOM_TRACK)
def test_each_method_changes_the_model_and_keeps_its_interface(setup, name):
    original, task = setup
    model = copy.deepcopy(original)
    METHODS.get(name).run(model, task, _settings(name), torch.Generator().manual_seed(0))
    before, after = original.state_dict(), model.state_dict()
    assert list(before) == list(after)
    assert all(before[k].shape == after[k].shape and before[k].dtype == after[k].dtype for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    assert not model.training
    out = model(to_float(task.images[:5]))
    assert out.shape == (5, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", RANDOM_TRACK)
def test_each_method_is_deterministic_given_the_seed(setup, name):
    original, task = setup
    states = []
    for _ in range(2):
        model = copy.deepcopy(original)
        METHODS.get(name).run(model, task, _settings(name), torch.Generator().manual_seed(3))
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_forgetting_methods_raise_the_forget_loss(setup):
    original, task = setup
    base = forget_loss(original, task)
    for name, lr in (("ga", 0.01), ("rl", 0.01), ("amun_no_remain", 0.05)):
        model = copy.deepcopy(original)
        cfg = _settings(name).model_copy(update={"lr": lr})
        METHODS.get(name).run(model, task, cfg, torch.Generator().manual_seed(0))
        assert forget_loss(model, task) > base, name


def test_amun_needs_the_adversarial_set(setup):
    original, task = setup
    bare = ForgetTask(task.images, task.labels, task.forget, task.remain, 10)
    with pytest.raises(ValueError, match="adversarial set"):
        METHODS.get("amun").run(copy.deepcopy(original), bare, _settings("amun"), torch.Generator())


@pytest.mark.parametrize("name", ["salun", "amun_salun"])
def test_masked_weights_stay_bit_identical_despite_weight_decay_and_momentum(setup, name):
    original, task = setup
    model = copy.deepcopy(original)
    cfg = _settings(name).model_copy(update={"weight_decay": 0.1, "momentum": 0.9, "lr": 0.05})
    METHODS.get(name).run(model, task, cfg, torch.Generator().manual_seed(0))
    mask = saliency_mask(original, to_float(task.images[task.forget]), task.labels[task.forget], cfg.mask_fraction)
    before, after = dict(original.named_parameters()), dict(model.named_parameters())
    frozen = sum(int((~m).sum()) for m in mask.values())
    assert frozen > 0
    for key, m in mask.items():
        assert torch.equal(after[key][~m], before[key][~m]), key
    assert any(not torch.equal(after[k][m], before[k][m]) for k, m in mask.items() if m.any())


def test_saliency_mask_keeps_the_requested_fraction_of_largest_gradients(setup):
    model, task = setup
    x, y = to_float(task.images[task.forget]), task.labels[task.forget]
    mask = saliency_mask(model, x, y, 0.3)
    total = sum(m.numel() for m in mask.values())
    kept = sum(int(m.sum()) for m in mask.values())
    assert abs(kept / total - 0.3) < 0.01
    loss = F.cross_entropy(model(x), y, reduction="sum")
    grads = torch.autograd.grad(loss, list(model.parameters()))
    magnitude = {name: g.abs() for (name, _), g in zip(model.named_parameters(), grads)}
    smallest_kept = min(magnitude[k][m].min() for k, m in mask.items() if m.any())
    largest_dropped = max(magnitude[k][~m].max() for k, m in mask.items() if (~m).any())
    assert smallest_kept >= largest_dropped


def test_freeze_outside_mask_rejects_unknown_parameters(setup):
    model, _ = setup
    with pytest.raises(ValueError, match="lacks"):
        FreezeOutsideMask(model, {"nope": torch.ones(1, dtype=torch.bool)})


def test_random_wrong_labels_avoid_the_true_label_and_change_each_epoch():
    true = torch.arange(10).repeat(50)
    labels = true.clone()
    relabel = RandomWrongLabels(labels, torch.arange(500), true, 10, torch.Generator().manual_seed(0))
    relabel.on_epoch_start(None, 1)
    first = labels.clone()
    relabel.on_epoch_start(None, 2)
    assert (first != true).all() and (labels != true).all() and (first != labels).any()
    assert set(first.tolist()) == set(range(10))


@pytest.mark.parametrize("schedule, expected", [
    ("linear", [1.0, 0.75, 0.5, 0.25]),      # 1 - (t - 1) / 4
    ("compounding", [1.0, 2.0, 3.0, 3.0]),   # x 2, x 1.5, x 1 after epochs 1, 2, 3
])
def test_l1_sparse_penalty_weight_of_every_epoch_follows_its_schedule(setup, monkeypatch, schedule, expected):
    """The L1 gradient l1_sparse hands to the real training loop, read each epoch on a net
    whose one weight is 1 (the gradient of w * |theta| there is w)."""
    original, task = setup
    unit = nn.Linear(1, 1, bias=False)
    nn.init.ones_(unit.weight)
    seen, train = {}, methods.train_

    class Recording(Callback):
        def __init__(self, l1):
            self.l1 = l1

        def before_step(self, model, epoch):
            unit.weight.grad = torch.zeros_like(unit.weight)
            methods.L1Gradient(unit, self.l1.weights).before_step(unit, epoch)
            seen.setdefault(epoch, unit.weight.grad.item())

    def spy(model, x, y, cfg, *, callbacks, **kwargs):
        (l1,) = [c for c in callbacks if isinstance(c, methods.L1Gradient)]
        return train(model, x, y, cfg, callbacks=[*callbacks, Recording(l1)], **kwargs)

    monkeypatch.setattr(methods, "train_", spy)
    cfg = L1SparseConfig(epochs=4, batch_size=512, alpha=0.5, alpha_schedule=schedule)
    methods.l1_sparse(copy.deepcopy(original), task, cfg, torch.Generator().manual_seed(0))
    assert seen == pytest.approx({epoch: 0.5 * weight for epoch, weight in enumerate(expected, start=1)}, rel=1e-7)


def test_l1_gradient_is_bit_identical_to_differentiating_the_penalty(setup):
    """Two foreach ops per step give exactly what autograd gives for ``w_t * ||theta||_1``."""
    original, task = setup
    weights = [0.01, 0.004]
    cfg = L1SparseConfig(epochs=2, batch_size=64, lr=0.05)
    by_autograd, by_callback = copy.deepcopy(original), copy.deepcopy(original)
    x, y = task.split("remain")

    def penalty(net, epoch):
        return weights[epoch - 1] * sum(p.abs().sum() for p in net.parameters() if p.requires_grad)

    methods.train_(by_autograd, x, y, cfg, generator=torch.Generator().manual_seed(0), penalty=penalty)
    methods.train_(by_callback, x, y, cfg, generator=torch.Generator().manual_seed(0),
                   callbacks=[methods.L1Gradient(by_callback, weights)])
    pairs = list(zip(by_autograd.state_dict().values(), by_callback.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not all(torch.equal(a, b) for a, b in zip(by_callback.parameters(), original.parameters()))


def test_l1_weight_equals_the_published_updates_exactly():
    """compounding: AMUN's loop (0-based epochs, weight updated after each); linear: SalUn's."""
    alpha, epochs, amun = 5e-4, 10, []
    for epoch in range(epochs):
        amun.append(alpha)
        alpha = (2 - 2 * epoch / epochs) * alpha
    assert [l1_weight(5e-4, t, epochs, "compounding") for t in range(1, epochs + 1)] == amun
    assert [l1_weight(5e-4, t, epochs, "linear") for t in range(1, epochs + 1)] == \
        [5e-4 * (1 - epoch / epochs) for epoch in range(epochs)]
    assert L1SparseConfig().alpha_schedule == "compounding"
    with pytest.raises(ValueError, match="linear, compounding"):
        l1_weight(5e-4, 1, epochs, "cosine")
