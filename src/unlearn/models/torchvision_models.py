"""Any classification builder of ``torchvision.models``, by name (``torchvision:<builder>``).

Weights are always freshly initialised (``weights=None``: nothing downloads); the head
gets the data's number of classes. The first convolution is rebuilt when the data's
channels differ from its own. ``cifar_stem`` adapts an ImageNet stem to small inputs
(the change the unlearning papers make to ResNets on CIFAR-10): the first convolution
becomes 3x3 with stride 1 and padding 1, and a max-pool met before the second
convolution becomes an identity.
"""

from __future__ import annotations

from torch import nn

from unlearn.errors import ConfigError


def classification_builders() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def build_torchvision(arch: str, *, in_channels: int, num_classes: int, cifar_stem: bool) -> nn.Module:
    """An untrained ``torchvision.models.<arch>`` for ``in_channels`` x ``num_classes``."""
    import torchvision

    known = classification_builders()
    if arch not in known:
        raise ConfigError(f"params.yaml: model.name = torchvision:{arch}: not a torchvision classification "
                          f"builder; one of: {', '.join(known)}")
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if getattr(model, "aux_logits", False):
        raise ConfigError(f"params.yaml: model.name = torchvision:{arch}: its auxiliary heads make training "
                          f"return several outputs; pick a builder with one output")
    _adapt_stem(model, arch, in_channels, cifar_stem)
    return model


def _adapt_stem(model: nn.Module, arch: str, in_channels: int, cifar_stem: bool) -> None:
    modules = list(model.named_modules())
    convs = [name for name, module in modules if isinstance(module, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"params.yaml: model.name = torchvision:{arch}: has no 2-D convolution to take "
                          f"{in_channels}-channel images")
    first = model.get_submodule(convs[0])
    if cifar_stem or first.in_channels != in_channels:
        kernel, stride, padding = (3, 1, 1) if cifar_stem else (first.kernel_size, first.stride, first.padding)
        _replace(model, convs[0], nn.Conv2d(in_channels, first.out_channels, kernel, stride=stride,
                                            padding=padding, bias=first.bias is not None))
    if cifar_stem:
        names = [name for name, _ in modules]
        second = names.index(convs[1]) if len(convs) > 1 else len(names)
        pools = [name for name, module in modules[:second] if isinstance(module, nn.MaxPool2d)]
        if pools:
            _replace(model, pools[0], nn.Identity())


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
