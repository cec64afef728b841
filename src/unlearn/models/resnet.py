"""ResNet-18, CIFAR variant (He et al. 2016): a 3x3 stride-1 stem and no max-pool,
as used by the unlearning papers (SalUn, AMUN) on 32x32 images."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from unlearn.models.registry import MODELS


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity (or 1x1 conv + BN) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not batch_norm)
        self.bn1 = _norm(cout, batch_norm)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=not batch_norm)
        self.bn2 = _norm(cout, batch_norm)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=not batch_norm),
                                          _norm(cout, batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], in_channels: int, num_classes: int, width: int,
                 batch_norm: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=not batch_norm),
                                  _norm(width, batch_norm), nn.ReLU())
        layers, cin = [], width
        for stage, count in enumerate(blocks):
            cout = width * 2**stage
            for i in range(count):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1, batch_norm))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.layers(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))


@MODELS.register("resnet18")
def resnet18(*, in_channels: int, num_classes: int, width: int | None = None, batch_norm: bool = True) -> ResNet:
    """CIFAR ResNet-18: [2, 2, 2, 2] basic blocks, base width 64 by default (11.2M parameters)."""
    return ResNet((2, 2, 2, 2), in_channels, num_classes, width or 64, batch_norm)
