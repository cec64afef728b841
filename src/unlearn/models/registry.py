"""The registry of architectures and the shared builder."""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import nn

from unlearn.names import TORCHVISION_PREFIX
from unlearn.registry import Registry


class ModelFactory(Protocol):
    def __call__(self, *, in_channels: int, num_classes: int, width: int | None, batch_norm: bool) -> nn.Module: ...


MODELS: Registry[ModelFactory] = Registry("model")


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``: the first layer of every model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def create_model(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
    width: int | None = None,
    batch_norm: bool = True,
    cifar_stem: bool = False,
) -> nn.Sequential:
    """Build ``Normalize(mean, std)`` followed by the network ``name``: a registered one, or
    ``torchvision:<builder>`` (:mod:`unlearn.models.torchvision_models`, with ``cifar_stem``).

    The weights are initialised from ``seed`` without touching the global RNG state.
    ``batch_norm: False`` builds the network without BatchNorm (FastClip's ``bn: remove``).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name.startswith(TORCHVISION_PREFIX):
            from unlearn.models.torchvision_models import build_torchvision

            body = build_torchvision(name.removeprefix(TORCHVISION_PREFIX), in_channels=in_channels,
                                     num_classes=num_classes, cifar_stem=cifar_stem)
        else:
            body = MODELS.get(name)(in_channels=in_channels, num_classes=num_classes, width=width,
                                    batch_norm=batch_norm)
    return nn.Sequential(Normalize(mean, std), body)
