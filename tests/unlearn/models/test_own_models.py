"""torchvision architectures by name, and existing checkpoints as the original model."""

import json
import struct

import pytest
import torch
from torch import nn

from unlearn.config import parse_params
from unlearn.errors import ConfigError, DataError
from unlearn.lipschitz import affine_layers, lipschitz_bound
from unlearn.models import create_model
from unlearn.models.checkpoint import load_checkpoint, read_state_dict


def _model(name="torchvision:resnet18", channels=1, cifar_stem=True, seed=0):
    return create_model(name, in_channels=channels, num_classes=10, mean=[0.5] * channels, std=[0.25] * channels,
                        seed=seed, cifar_stem=cifar_stem)


def test_cifar_stem_gives_resnet_a_3x3_stride_1_stem_without_max_pool():
    net = _model()[1]
    assert (net.conv1.in_channels, net.conv1.kernel_size, net.conv1.stride) == (1, (3, 3), (1, 1))
    assert isinstance(net.maxpool, nn.Identity) and net.fc.out_features == 10
    plain = _model(channels=3, cifar_stem=False)[1]
    assert (plain.conv1.kernel_size, plain.conv1.stride) == ((7, 7), (2, 2)) and isinstance(plain.maxpool, nn.MaxPool2d)
    assert _model().eval()(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_weights_depend_on_the_seed_only():
    first, again, other = _model(seed=3), _model(seed=3), _model(seed=4)
    assert torch.equal(first[1].conv1.weight, again[1].conv1.weight)
    assert not torch.equal(first[1].conv1.weight, other[1].conv1.weight)


def test_unknown_builder_is_one_clear_line():
    with pytest.raises(ConfigError, match=r"model.name = torchvision:resnet7: not a torchvision classification "
                                          r"builder; one of: .*resnet18"):
        _model("torchvision:resnet7")


def test_fastclip_finds_the_layers_and_the_bound_refuses_clearly():
    model = _model()
    layers = affine_layers(model, (1, 8, 8), "composite")
    assert len(layers) == 21 and layers[-1].name == "1.fc"  # 20 convolutions (BN merged) and the head
    with pytest.raises(ValueError, match="no Lipschitz rule for ResNet at 1: the bound covers"):
        lipschitz_bound(model, (1, 8, 8), iters=2)


@pytest.mark.parametrize("update, message", [
    ({"name": "torchvision:"}, "model.name = 'torchvision:': must be one of: resnet18, small_cnn, or torchvision:"),
    ({"name": "torchvision:resnet18", "width": 8}, "width is for the registry models"),
    ({"name": "torchvision:resnet18", "batch_norm": False}, "batch_norm: false is for the registry models"),
    ({"cifar_stem": True}, "cifar_stem is for torchvision:<builder> models"),
    ({"checkpoint": "data/user/models/x.pt"}, "params.yaml: model: checkpoint moved to original.checkpoint"),
])
def test_model_config_errors(update, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_params({"model": update})


@pytest.mark.parametrize("path", ["/tmp/model.pt", "data/user/models/../../x.pt"])
def test_a_checkpoint_outside_the_user_folder_is_refused(path):
    with pytest.raises(ConfigError, match="checkpoints are read from data/user/models/"):
        parse_params({"original": {"checkpoint": path}})


def _safetensors(path, state):
    header, blobs, offset = {}, [], 0
    names = {torch.float32: "F32", torch.int64: "I64"}
    for key, tensor in state.items():
        raw = tensor.contiguous().numpy().tobytes()
        header[key] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps({"__metadata__": {"format": "pt"}, **header}).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


@pytest.mark.parametrize("form", ["pt", "pth-wrapped", "safetensors", "whole", "dataparallel"])
def test_checkpoint_forms_load_exactly(tmp_path, form):
    source = _model(seed=7)
    state = source[1].state_dict()
    path = tmp_path / f"model.{'safetensors' if form == 'safetensors' else 'pth' if form == 'pth-wrapped' else 'pt'}"
    if form == "safetensors":
        _safetensors(path, state)
    elif form == "pth-wrapped":
        torch.save({"state_dict": state, "epoch": 3}, path)
    elif form == "whole":
        torch.save(source.state_dict(), path)
    else:
        torch.save({("module." if form == "dataparallel" else "") + k: v for k, v in state.items()}, path)
    target = _model(seed=0)
    load_checkpoint(target, path, "torchvision:resnet18")
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))


def test_checkpoint_mismatches_are_one_line(tmp_path):
    target = _model()
    other = _model("torchvision:resnet18", channels=3, cifar_stem=False)
    torch.save(other[1].state_dict(), tmp_path / "rgb.pt")
    with pytest.raises(DataError, match=r"rgb.pt: does not fit model.name = torchvision:resnet18: conv1.weight has "
                                        r"shape \(64, 3, 7, 7\), the model's is \(64, 1, 3, 3\)"):
        load_checkpoint(target, tmp_path / "rgb.pt", "torchvision:resnet18")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "partial.pt")
    with pytest.raises(DataError, match=r"partial.pt: does not fit .*: it lacks 'bn1.weight' \(and \d+ more\)"):
        load_checkpoint(target, tmp_path / "partial.pt", "torchvision:resnet18")
    torch.save({**target[1].state_dict(), "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(DataError, match=r"extra.pt: does not fit .*: it has 'extra.weight'"):
        load_checkpoint(target, tmp_path / "extra.pt", "torchvision:resnet18")


def test_unsafe_or_odd_files_are_refused(tmp_path):
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "pickled.pt")
    with pytest.raises(DataError, match=r"pickled.pt: holds a pickled object.*torch.save\(model.state_dict\(\), "
                                        r"'pickled.pt'\)") as refused:
        read_state_dict(tmp_path / "pickled.pt")
    assert "\x1b" not in str(refused.value) and "\n" not in str(refused.value) and "options" not in str(refused.value)
    (tmp_path / "corrupt.pt").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="corrupt.pt: not a weights-only state_dict"):
        read_state_dict(tmp_path / "corrupt.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(DataError, match="list.pt: not a state_dict"):
        read_state_dict(tmp_path / "list.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(DataError, match="bad.safetensors: not a valid safetensors file"):
        read_state_dict(tmp_path / "bad.safetensors")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(DataError, match="unknown checkpoint format '.onnx'"):
        read_state_dict(tmp_path / "model.onnx")
    with pytest.raises(DataError, match="absent.pt: checkpoint not found"):
        read_state_dict(tmp_path / "absent.pt")


def test_fastclip_clips_every_layer_of_a_torchvision_model():
    from unlearn.config import LipschitzConfig, TrainConfig
    from unlearn.lipschitz import clipping_callbacks, top_singular
    from unlearn.training import train_

    model = _model("torchvision:resnet18")
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 10, (64,))
    cfg = LipschitzConfig(method="fastclip", target=2.5, clip_every=2, bn="ignore", iters=30)  # 8 layers start above
    train_(model, images, labels, TrainConfig(epochs=1, batch_size=32, lr=0.05),
           generator=torch.Generator().manual_seed(0), callbacks=clipping_callbacks(model, (1, 8, 8), cfg, 0))
    norms = [float(top_singular(layer.module, layer.input_shape, 1, 200, generator=torch.Generator().manual_seed(1))[0][0])
             for layer in affine_layers(model, (1, 8, 8), "ignore")]
    assert len(norms) == 21 and max(norms) <= 2.5 * 1.02
