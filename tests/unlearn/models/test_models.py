import pytest
import torch

from unlearn.errors import ConfigError
from unlearn.models import MODELS, Normalize, create_model


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("channels, size", [(1, 8), (3, 32), (3, 13)])
def test_every_model_forward_backward(name, channels, size):
    model = create_model(name, in_channels=channels, num_classes=7, mean=[0.5] * channels,
                         std=[0.25] * channels, seed=0, width=8)
    x = torch.rand(2, channels, size, size)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert isinstance(model[0], Normalize)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = create_model("small_cnn", in_channels=1, num_classes=10, mean=[0.5], std=[0.5], seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = create_model("small_cnn", in_channels=1, num_classes=10, mean=[0.5], std=[0.5], seed=1)
    c = create_model("small_cnn", in_channels=1, num_classes=10, mean=[0.5], std=[0.5], seed=2)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a[1][0].weight, c[1][0].weight)


def test_resnet18_is_the_cifar_variant():
    model = create_model("resnet18", in_channels=3, num_classes=10, mean=[0.5] * 3, std=[0.5] * 3, seed=0)
    stem = model[1].stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert 11_000_000 < sum(p.numel() for p in model.parameters()) < 11_300_000


def test_unknown_model_lists_known_names():
    with pytest.raises(ConfigError, match="unknown model 'vgg'; known: resnet18, small_cnn"):
        MODELS.get("vgg")
