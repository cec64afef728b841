"""An upper bound on a model's Lipschitz constant: the product of per-layer spectral norms.

Rules are registered per module type (as opacus registers grad samplers). Composition
multiplies; a residual block adds its two paths (``||f + g|| <= ||f|| + ||g||``);
ReLU, Flatten, Identity and Dropout are 1-Lipschitz; BatchNorm is taken with its
running statistics (eval mode) and merged with the conv before it; every affine
layer's norm is exact (:func:`~unlearn.lipschitz.top_singular`). The bound holds for
the model in eval mode, in the L2 norm on pixel inputs.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from unlearn.device import exact
from unlearn.lipschitz.operator import LINEAR_LEAVES, module_shapes
from unlearn.lipschitz.spectrum import top_singular
from unlearn.models.registry import Normalize
from unlearn.models.resnet import BasicBlock, ResNet
from unlearn.training import train_mode

_RULES: dict[type, Callable] = {}
_ONE_LIPSCHITZ = (nn.ReLU, nn.Flatten, nn.Identity, nn.Dropout)


def _rule(*types: type):
    def register(fn: Callable) -> Callable:
        for t in types:
            if t in _RULES:
                raise ValueError(f"a Lipschitz rule for {t.__name__} is already registered")
            _RULES[t] = fn
        return fn
    return register


class _Walker:
    """Walks a model, recording each affine layer's norm in ``table``."""

    def __init__(self, shapes: dict, out_shapes: dict, iters: int) -> None:
        self.shapes = shapes
        self.out_shapes = out_shapes
        self.iters = iters
        self.table: list[dict] = []

    def bound(self, module: nn.Module, name: str) -> float:
        for kind in type(module).__mro__:
            if kind in _RULES:
                return _RULES[kind](self, module, name)
        if isinstance(module, _ONE_LIPSCHITZ):
            return 1.0
        if isinstance(module, LINEAR_LEAVES):
            return self.affine(module, name)
        raise ValueError(f"no Lipschitz rule for {type(module).__name__} at {name or '<model>'}: the bound "
                         f"covers chains of Normalize, Conv, Linear, BatchNorm, ReLU, Flatten, Dropout and "
                         f"Identity, and this project's ResNet (FastClip still finds and clips every layer)")

    def affine(self, module: nn.Module, name: str, first: nn.Module | None = None) -> float:
        shape = self.shapes[first if first is not None else module]
        sigma = float(top_singular(module, shape, 1, self.iters, generator=torch.Generator().manual_seed(0))[0][0])
        self.table.append({"layer": name, "type": "+".join(type(m).__name__ for m in _leaves(module)),
                           "input_shape": list(shape), "norm": sigma})
        return sigma

    def chain(self, modules: Sequence[tuple[str, nn.Module]]) -> float:
        """Product over a sequence, merging each conv with a BatchNorm right after it."""
        total, i = 1.0, 0
        while i < len(modules):
            name, module = modules[i]
            follower = modules[i + 1][1] if i + 1 < len(modules) else None
            if isinstance(module, (nn.Conv1d, nn.Conv2d)) and isinstance(follower, (nn.BatchNorm1d, nn.BatchNorm2d)):
                total *= self.affine(nn.Sequential(module, follower), name, first=module)
                i += 2
            else:
                total *= self.bound(module, name)
                i += 1
        return total


def _leaves(module: nn.Module) -> list[nn.Module]:
    return list(module) if isinstance(module, nn.Sequential) else [module]


def _join(parent: str, child: str) -> str:
    return f"{parent}.{child}" if parent else child


def _prefixed(parent: str, children) -> list[tuple[str, nn.Module]]:
    return [(_join(parent, n), m) for n, m in children]


@_rule(nn.Sequential)
def _sequential(walker: _Walker, module: nn.Sequential, name: str) -> float:
    return walker.chain(_prefixed(name, module.named_children()))


@_rule(Normalize)
def _normalize(walker: _Walker, module: Normalize, name: str) -> float:
    return float(1.0 / module.std.min())


@_rule(BasicBlock)
def _basic_block(walker: _Walker, block: BasicBlock, name: str) -> float:
    main = walker.chain(_prefixed(name, [("conv1", block.conv1), ("bn1", block.bn1),
                                         ("conv2", block.conv2), ("bn2", block.bn2)]))
    return main + walker.bound(block.shortcut, _join(name, "shortcut"))  # the final ReLU is 1-Lipschitz


@_rule(ResNet)
def _resnet(walker: _Walker, net: ResNet, name: str) -> float:
    body = walker.chain(_prefixed(name, [("stem", net.stem), ("layers", net.layers)]))
    return body * _global_average_pool(walker, net) * walker.bound(net.head, _join(name, "head"))


def _global_average_pool(walker: _Walker, net: ResNet) -> float:
    _, height, width = walker.out_shapes[net.layers]
    return 1.0 / (height * width) ** 0.5  # averaging n values: operator norm 1/sqrt(n)


@exact()
def lipschitz_bound(model: nn.Module, input_shape: Sequence[int], iters: int = 100) -> tuple[float, list[dict]]:
    """An upper bound on the L2 Lipschitz constant of ``model`` (eval mode) and a per-layer table.

    Returns ``(bound, table)``; each table row has ``layer``, ``type``, ``input_shape``
    and ``norm`` (the exact spectral norm of that affine layer, conv+BN merged).
    """
    walker = _Walker(*module_shapes(model, input_shape), iters)
    with train_mode(model, False):
        total = walker.bound(model, "")
    return total, walker.table
