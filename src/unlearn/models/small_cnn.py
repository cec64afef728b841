"""A small convolutional network: the fast CPU default."""

from __future__ import annotations

from torch import nn

from unlearn.models.registry import MODELS


def _conv_block(cin: int, cout: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    if batch_norm:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]


@MODELS.register("small_cnn")
def small_cnn(*, in_channels: int, num_classes: int, width: int | None = None, batch_norm: bool = True) -> nn.Sequential:
    """Three 3x3 conv + BatchNorm + ReLU blocks (widths w, 2w, 4w; the last two stride 2),
    global average pooling and a linear classifier. Default width 32 (about 100k parameters)."""
    w = width or 32
    return nn.Sequential(
        *_conv_block(in_channels, w, 1, batch_norm),
        *_conv_block(w, 2 * w, 2, batch_norm),
        *_conv_block(2 * w, 4 * w, 2, batch_norm),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, num_classes),
    )
