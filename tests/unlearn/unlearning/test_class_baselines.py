import copy

import pytest
import torch

from tests.conftest import ROOT
from unlearn.config import RemainOptionalConfig, ScrubConfig, TrainConfig, UnlearnClassConfig, load_params
from unlearn.data import load_dataset
from unlearn.models import create_model
from unlearn.training import train_
from unlearn.unlearning import METHODS, ForgetTask
from unlearn.unlearning.class_baselines import boundary_expanding, scrub


@pytest.fixture(scope="module")
def setup():
    data = load_dataset("digits")
    images, labels = data.images[:900], data.labels[:900]  # the model trains on the first 600, 600.. are held out
    model = create_model("small_cnn", in_channels=1, num_classes=10, mean=[0.3], std=[0.3], seed=0, width=8)
    train_(model, images[:600], labels[:600], TrainConfig(epochs=6, batch_size=32),
           generator=torch.Generator().manual_seed(0))
    task = ForgetTask(images, labels, torch.nonzero(labels[:600] == 3).squeeze(1),
                      torch.nonzero(labels[:600] != 3).squeeze(1), 10, holdout=torch.arange(600, 900))
    return model.eval(), task


def _accuracies(model, task):
    with torch.no_grad():
        model.eval()
        acc = {}
        for split in ("forget", "remain"):
            x, y = task.split(split)
            acc[split] = (model(x).argmax(1) == y).float().mean().item()
    return acc


def test_boundary_expanding_forgets_the_class_and_keeps_the_head_shape(setup):
    original, task = setup
    model = copy.deepcopy(original)
    cfg = RemainOptionalConfig(epochs=3, batch_size=64, lr=0.01)
    boundary_expanding(model, task, cfg, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in model.state_dict().values()] == \
        [tuple(v.shape) for v in original.state_dict().values()]
    acc = _accuracies(model, task)
    assert acc["forget"] < 0.1 and acc["remain"] > 0.9


def test_scrub_lowers_forget_accuracy_and_keeps_remain(setup):
    original, task = setup
    model = copy.deepcopy(original)
    scrub(model, task, ScrubConfig(epochs=5, batch_size=16, lr=0.05, max_epochs=4, kd_temperature=4.0),
          torch.Generator().manual_seed(0))
    acc = _accuracies(model, task)
    assert acc["forget"] < _accuracies(original, task)["forget"] - 0.3 and acc["remain"] > 0.85
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), original.state_dict().values()))


@pytest.mark.parametrize("name", sorted(UnlearnClassConfig.model_fields))
def test_each_class_method_is_registered_deterministic_and_keeps_the_interface(setup, name):
    original, task = setup
    cfg = getattr(UnlearnClassConfig(), name).model_copy(update={"epochs": 2})
    states = []
    for _ in range(2):
        model = copy.deepcopy(original)
        METHODS.get(name).run(model, task, cfg, torch.Generator().manual_seed(3))
        states.append(model.state_dict())
    before = original.state_dict()
    assert [tuple(v.shape) for v in states[0].values()] == [tuple(v.shape) for v in before.values()]
    assert all(torch.equal(states[0][k], states[1][k]) for k in before)
    assert any(not torch.equal(before[k], states[0][k]) for k in before if before[k].is_floating_point())


@pytest.mark.parametrize("name", ["trw", "rl", "be", "salun", "scrub"])
def test_class_methods_forget_the_class_with_the_projects_settings(setup, name):
    original, task = setup
    model = copy.deepcopy(original)
    cfg = getattr(load_params(ROOT / "params.yaml").unlearn_class, name)
    METHODS.get(name).run(model, task, cfg, torch.Generator().manual_seed(0))
    acc = _accuracies(model, task)
    assert acc["forget"] < 0.1 and acc["remain"] > 0.85, acc
