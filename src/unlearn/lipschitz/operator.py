"""An affine layer seen as an implicit linear operator ``A x = f(x) - f(0)``."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from unlearn.training import train_mode


LINEAR_LEAVES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def check_affine(module: nn.Module) -> None:
    """Raise ValueError unless ``module`` is an affine map (a linear leaf or a Sequential of them)."""
    leaves = list(module) if isinstance(module, nn.Sequential) else [module]
    for leaf in leaves:
        if isinstance(leaf, nn.Sequential):
            check_affine(leaf)
        elif not isinstance(leaf, LINEAR_LEAVES):
            raise ValueError(f"{type(leaf).__name__} is not an affine layer; expected Linear, Conv1d/2d, "
                             f"BatchNorm (eval mode), pooling, or a Sequential of them")


def weight_of(module: nn.Module) -> nn.Parameter:
    """The weight that clipping changes: that of the (first) Linear or Conv layer."""
    for leaf in module.modules():
        if isinstance(leaf, WEIGHTED):
            return leaf.weight
    raise ValueError(f"{type(module).__name__} has no Linear or Conv layer whose weight could be clipped")


class LinearPart:
    """``x -> f(x) - f(0)`` for an affine ``f`` on inputs of shape ``input_shape`` (no batch dim)."""

    def __init__(self, module: nn.Module, input_shape: Sequence[int]) -> None:
        check_affine(module)
        self.module = module
        self.input_shape = tuple(int(d) for d in input_shape)
        param = next(module.parameters(), None)
        self.dtype = param.dtype if param is not None else torch.float32
        self.device = param.device if param is not None else torch.device("cpu")
        try:
            with torch.no_grad():
                self.offset = module(torch.zeros(1, *self.input_shape, dtype=self.dtype, device=self.device))
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ValueError(f"input_shape {self.input_shape} does not fit {type(module).__name__}: {first}") from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply A to a batch ``x`` of shape (k, *input_shape)."""
        return self.module(x) - self.offset

    @property
    def size(self) -> int:
        return int(torch.Size(self.input_shape).numel())


def module_shapes(model: nn.Module, input_shape: Sequence[int]) -> tuple[dict, dict]:
    """Input and output shapes (no batch dim) of every module, from one zero input."""
    shapes: dict = {}
    out_shapes: dict = {}

    def record(module, args, out) -> None:  # a hook returning a value would replace the output
        shapes.setdefault(module, tuple(args[0].shape[1:]))
        out_shapes.setdefault(module, tuple(out.shape[1:]))

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    param = next(model.parameters())
    try:
        with train_mode(model, False), torch.no_grad():
            model(torch.zeros(1, *input_shape, dtype=param.dtype, device=param.device))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes, out_shapes
