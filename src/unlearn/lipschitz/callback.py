"""FastClip during training: a step callback that keeps every affine layer at or below a target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import nn

from unlearn.lipschitz.clip import clip_with_vector, shrink_
from unlearn.lipschitz.spectrum import top_singular
from unlearn.lipschitz.operator import WEIGHTED, module_shapes
from unlearn.training import Callback

BN_MODES = ("ignore", "remove", "composite")
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class AffineLayer:
    name: str  # the weighted layer's name in the model, e.g. "1.3" or "1.layers.0.conv1"
    module: nn.Module  # the layer itself, or Sequential(conv, bn) in composite mode
    input_shape: tuple[int, ...]


def affine_layers(model: nn.Module, input_shape: Sequence[int],
                  bn: Literal["ignore", "remove", "composite"] = "ignore") -> list[AffineLayer]:
    """Every Linear / Conv layer of ``model`` with the shape of its input (no batch dim).

    ``bn``: ``ignore`` takes each conv alone; ``composite`` pairs a conv with the
    BatchNorm registered right after it (same channel count) as one affine map;
    ``remove`` takes each conv alone and requires a model built without BatchNorm.
    Input shapes are read by forward hooks on one zero input of ``input_shape``.
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn = {bn!r}: must be one of {', '.join(BN_MODES)}")
    named = list(model.named_modules())
    if bn == "remove":
        found = next((name for name, m in named if isinstance(m, _BATCH_NORMS)), None)
        if found is not None:
            raise ValueError(f"bn = 'remove' needs a model built without BatchNorm (model.batch_norm: false); "
                             f"found one at {found!r}")
    shapes, _ = module_shapes(model, input_shape)
    layers = []
    for i, (name, module) in enumerate(named):
        if not isinstance(module, WEIGHTED) or module not in shapes:
            continue
        follower = named[i + 1][1] if i + 1 < len(named) else None
        if (bn == "composite" and isinstance(module, (nn.Conv1d, nn.Conv2d)) and isinstance(follower, _BATCH_NORMS)
                and follower.num_features == module.out_channels):
            module = nn.Sequential(module, follower)
        layers.append(AffineLayer(name, module, shapes[named[i][1]]))
    return layers


class FastClip(Callback):
    """Clip every affine layer of ``model`` to at most ``target`` every ``clip_every`` steps
    and once more at the end of training.

    During training (the paper's scheme), each layer's top right singular vector is
    kept between clips and warm-starts ``iters`` power iterations; if the value found
    exceeds the target, that one direction is shrunk to it. At the end of training a
    full :func:`~unlearn.lipschitz.clip.clip_with_vector` (random restarts,
    ``final_iters`` iterations, several directions and rounds) leaves every layer
    verified at or below the target.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int], *, target: float, clip_every: int = 50,
                 bn: Literal["ignore", "remove", "composite"] = "ignore", iters: int = 20,
                 final_iters: int = 100, seed: int = 0) -> None:
        if not target > 0:
            raise ValueError(f"target must be > 0, got {target}")
        if clip_every < 1:
            raise ValueError(f"clip_every must be >= 1, got {clip_every}")
        self.layers = affine_layers(model, input_shape, bn)
        self.target = target
        self.clip_every = clip_every
        self.iters = iters
        self.final_iters = final_iters
        self.generator = torch.Generator().manual_seed(seed)
        self.vectors: dict[str, torch.Tensor] = {}
        self.sigmas: dict[str, float] = {}

    def on_step(self, model: nn.Module, step: int) -> None:
        if step % self.clip_every == 0:
            for layer in self.layers:
                self._track_and_clip(layer)

    def on_train_end(self, model: nn.Module) -> None:
        self.clip_all()

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "vectors": dict(self.vectors), "sigmas": dict(self.sigmas)}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.vectors = dict(state["vectors"])
        self.sigmas = dict(state["sigmas"])

    def _track_and_clip(self, layer: AffineLayer) -> None:
        # two random extra vectors let the iteration leave a direction clipped last time
        sigmas, vector = top_singular(layer.module, layer.input_shape, 1, self.iters, oversample=2,
                                      init=self.vectors.get(layer.name), generator=self.generator)
        sigma = float(sigmas[0])
        if sigma > self.target:
            shrink_(layer.module, layer.input_shape, vector, torch.tensor([self.target / sigma]))
            sigma = self.target
        self.vectors[layer.name] = vector
        self.sigmas[layer.name] = sigma

    def clip_all(self) -> dict[str, float]:
        """Clip every layer fully (verified); returns {layer name: largest singular value after clipping}."""
        for layer in self.layers:
            sigma, vector = clip_with_vector(layer.module, layer.input_shape, self.target,
                                             iters=self.final_iters, generator=self.generator)
            self.vectors[layer.name] = vector
            self.sigmas[layer.name] = sigma
        return dict(self.sigmas)
