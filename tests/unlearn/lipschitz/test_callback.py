import pytest
import torch
from torch import nn

from unlearn.config import TrainConfig
from unlearn.data import load_dataset
from unlearn.evaluation import accuracy, predict
from unlearn.lipschitz import FastClip, affine_layers, lipschitz_bound
from unlearn.lipschitz.baselines import dense_singular_values
from unlearn.models import create_model
from unlearn.training import train_


def _model(batch_norm=True, name="small_cnn", channels=1):
    return create_model(name, in_channels=channels, num_classes=10, mean=[0.3] * channels, std=[0.3] * channels,
                        seed=0, width=8, batch_norm=batch_norm)


@pytest.mark.parametrize("bn, batch_norm", [("ignore", True), ("composite", True), ("remove", False)])
def test_training_with_fastclip_keeps_every_layer_at_the_target(bn, batch_norm):
    data = load_dataset("digits")
    model = _model(batch_norm)
    clip = FastClip(model, (1, 8, 8), target=1.0, clip_every=5, bn=bn)
    train_(model, data.images[:300], data.labels[:300], TrainConfig(epochs=2, batch_size=32),
           generator=torch.Generator().manual_seed(0), callbacks=[clip])
    for layer in clip.layers:
        assert dense_singular_values(layer.module, layer.input_shape)[0].item() <= 1.02, layer.name


def test_composite_training_does_not_collapse_and_keeps_every_conv_bn_pair_at_the_target():
    # before the fix (the conv weight shrunk to bound conv + BN): 9.9 % test accuracy for this run
    data = load_dataset("digits")
    model = _model()
    clip = FastClip(model, (1, 8, 8), target=1.0, clip_every=5, bn="composite")
    train_(model, data.images[:600], data.labels[:600], TrainConfig(epochs=3, batch_size=32),
           generator=torch.Generator().manual_seed(0), callbacks=[clip])
    assert accuracy(predict(model, data.images[1200:]), data.labels[1200:]) > 40.0  # chance: 10 %
    pairs = affine_layers(model, (1, 8, 8), "composite")
    assert sum(isinstance(layer.module, nn.Sequential) for layer in pairs) == 3
    for layer in pairs:
        assert dense_singular_values(layer.module, layer.input_shape)[0].item() <= 1.01, layer.name
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert (bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps)).max().item() <= 1.0 + 1e-6


def test_two_sided_training_ends_with_every_layer_at_the_target():
    data = load_dataset("digits")
    model = _model(batch_norm=False)
    clip = FastClip(model, (1, 8, 8), target=3.0, clip_every=5, bn="remove", two_sided=True)
    train_(model, data.images[:100], data.labels[:100], TrainConfig(epochs=1, batch_size=32),
           generator=torch.Generator().manual_seed(0), callbacks=[clip])
    for layer in clip.layers:
        exact = dense_singular_values(layer.module, layer.input_shape)[0].item()
        assert exact == pytest.approx(3.0, rel=1e-2), layer.name
        assert clip.sigmas[layer.name] == pytest.approx(exact, rel=1e-2)


def test_affine_layers_by_bn_mode():
    model = _model()
    plain = affine_layers(model, (1, 8, 8), "ignore")
    merged = affine_layers(model, (1, 8, 8), "composite")
    assert [l.name for l in plain] == [l.name for l in merged] == ["1.0", "1.3", "1.6", "1.11"]
    assert isinstance(merged[0].module, nn.Sequential) and isinstance(merged[0].module[1], nn.BatchNorm2d)
    assert isinstance(merged[-1].module, nn.Linear) and plain[1].input_shape == (8, 8, 8)
    with pytest.raises(ValueError, match="bn = 'remove' needs a model built without BatchNorm"):
        affine_layers(model, (1, 8, 8), "remove")
    with pytest.raises(ValueError, match="bn = 'sometimes': must be one of"):
        affine_layers(model, (1, 8, 8), "sometimes")


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_bound_is_above_the_empirical_lipschitz_constant(name):
    model = _model(name=name, channels=3).eval()
    bound, table = lipschitz_bound(model, (3, 8, 8))
    assert all(row["norm"] > 0 for row in table)
    x = torch.rand(64, 3, 8, 8)
    delta = 1e-2 * torch.randn_like(x)
    with torch.no_grad():
        ratios = (model(x + delta) - model(x)).norm(dim=1) / delta.flatten(1).norm(dim=1)
    assert ratios.max().item() <= bound


def test_bound_of_a_linear_network_is_the_product_of_exact_norms():
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    bound, table = lipschitz_bound(net, (6,))
    norms = [dense_singular_values(net[i], (6,) if i == 0 else (5,))[0].item() for i in (0, 2)]
    assert bound == pytest.approx(norms[0] * norms[1], rel=1e-4)
    assert [row["layer"] for row in table] == ["0", "2"]
