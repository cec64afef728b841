"""The baselines beyond the thesis: SSD's dampening rule, NegGrad+'s paired objective, UNSIR's
noise and its forgetting of a class, and the studies' handling of a method without a rate."""

import copy

import pytest
import torch
from torch.nn import functional as F

from tests.unlearn.unlearning.test_class_baselines import _accuracies
from tests.unlearn.unlearning.test_class_baselines import setup as class_setup  # noqa: F401  (fixture)
from tests.unlearn.unlearning.test_methods import forget_loss
from tests.unlearn.unlearning.test_methods import setup  # noqa: F401  (fixture)
from unlearn.config import NegGradPlusConfig, SsdConfig, UnsirConfig
from unlearn.errors import ConfigError
from unlearn.unlearning import METHODS
from unlearn.unlearning.ssd import importances
from unlearn.unlearning.unsir import error_maximising_noise


def test_ssd_dampens_exactly_the_selected_weights_by_the_rule(setup):
    original, task = setup
    cfg = SsdConfig(alpha=2.0, dampening=0.5, batch_size=64)
    model = copy.deepcopy(original)
    params = [p for p in model.parameters() if p.requires_grad]
    xf, yf = task.split("forget")
    xr, yr = task.split("remain")
    on_forget = importances(model, params, xf, yf, cfg.batch_size)
    on_whole = importances(model, params, torch.cat([xr, xf]), torch.cat([yr, yf]), cfg.batch_size)
    before = [p.detach().clone() for p in params]
    METHODS.get("ssd").run(model, task, cfg, torch.Generator())
    selected_in_all = 0
    for p, old, f, o in zip(params, before, on_forget, on_whole):
        selected = f > cfg.alpha * o
        selected_in_all += int(selected.sum())
        expected = torch.where(selected, old * (cfg.dampening * o / f).clamp(max=1.0), old)
        assert torch.equal(p.detach(), expected)
    assert selected_in_all > 0  # the rule did select weights here, so the check above could fail


def test_ssd_with_a_selection_weight_nothing_reaches_leaves_the_model_bit_identical(setup):
    original, task = setup
    model = copy.deepcopy(original)
    METHODS.get("ssd").run(model, task, SsdConfig(alpha=1e12), torch.Generator())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), original.state_dict().values()))


def test_neggrad_plus_ascends_the_forget_loss_the_more_the_smaller_alpha(setup):
    original, task = setup
    losses, remain_accuracy = [], []
    for alpha in (1.0, 0.7, 0.5):  # 1.0: remain descent alone (the forget batches still run forward)
        model = copy.deepcopy(original)
        cfg = NegGradPlusConfig(epochs=3, batch_size=64, forget_batch_size=16, lr=0.01, alpha=alpha)
        METHODS.get("neggrad_plus").run(model, task, cfg, torch.Generator().manual_seed(0))
        losses.append(forget_loss(model, task))
        with torch.no_grad():
            x, y = task.split("remain")
            remain_accuracy.append((model.eval()(x).argmax(1) == y).float().mean().item())
    assert losses[0] < losses[1] < losses[2] and losses[2] > 1.5 * forget_loss(original, task)
    assert min(remain_accuracy) > 0.95


def test_unsir_noise_is_what_the_model_finds_most_wrong_for_the_class(class_setup):  # noqa: F811
    original, task = class_setup
    model = copy.deepcopy(original)
    cfg = UnsirConfig(noise_steps=20)
    start = torch.randn((32, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    noise = error_maximising_noise(model, 3, (32, 1, 8, 8), cfg, torch.Generator().manual_seed(0))
    target = torch.full((32,), 3)
    with torch.no_grad():
        assert F.cross_entropy(model(noise), target) > F.cross_entropy(model(start), target) + 1.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), original.state_dict().values()))
    assert all(p.requires_grad for p in model.parameters())  # frozen only while the noise is optimised


def test_unsir_with_the_projects_settings_forgets_the_class_and_keeps_the_rest(class_setup):  # noqa: F811
    from tests.conftest import ROOT
    from unlearn.config import load_params

    original, task = class_setup
    model = copy.deepcopy(original)
    METHODS.get("unsir").run(model, task, load_params(ROOT / "params.yaml").unlearn_class.unsir,
                             torch.Generator().manual_seed(0))
    acc = _accuracies(model, task)
    assert acc["forget"] < 0.1 and acc["remain"] > 0.85, acc


def test_the_sweeps_run_a_method_without_a_rate_as_set_and_refuse_a_grid_for_it():
    from unlearn_pipeline.stages.sweep import method_points

    assert method_points("ssd", SsdConfig(), {}, [1, 5]) == [{}]
    with pytest.raises(ConfigError, match="sweep.lr_grid.ssd: ssd has no learning rate"):
        method_points("ssd", SsdConfig(), {"ssd": [0.1]}, [])
    assert len(method_points("neggrad_plus", NegGradPlusConfig(), {"neggrad_plus": [0.01, 0.1]}, [1, 5])) == 4

