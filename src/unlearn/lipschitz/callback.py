"""FastClip during training: a step callback that keeps every affine layer at or below a target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import nn

from unlearn.lipschitz.clip import check_batch_norm, clamp_batch_norm_, clip_scales, clip_with_vector, shrink_
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

    During training (the paper's scheme), each layer's top ``directions`` right singular
    vectors are kept between clips and warm-start ``iters`` power iterations (with two
    random extra vectors, which let the iteration leave directions clipped last time);
    every direction found above the target is shrunk to it, and with ``two_sided`` (the
    FastClip code's default for convolutions) the top one is raised to it when below.
    At the end of training a full :func:`~unlearn.lipschitz.clip.clip_with_vector`
    (random restarts, ``final_iters`` iterations, verified rounds) leaves every layer
    at or below the target (with ``two_sided``, at it), up to a relative 1e-3.

    BatchNorm (``bn``, see :func:`affine_layers`): with ``composite``, each conv is
    clipped alone and the BatchNorm after it separately, as the FastClip code does
    (``bn_hard``): its scale is clamped so that its per-channel gain
    ``|gamma| / sqrt(running_var + eps)`` is at most ``target``
    (:func:`~unlearn.lipschitz.clip.clamp_batch_norm_`; never raised, also with
    ``two_sided``). A conv + BatchNorm pair is then at most ``target ** 2``, which is
    ``target`` for ``target = 1``. Shrinking the conv weight alone to bound the merged
    conv + BatchNorm map (``composite`` before) does not hold in training: BatchNorm
    re-normalises the conv output by its batch statistics, so the running variance
    follows the smaller weight, the eval-mode gain grows back, every clip shrinks the
    weight again, and the running mean kept from the larger weight shifts the eval-mode
    outputs (small_cnn on digits, target 1: 8.7-10.9 % test accuracy over 3 seeds).

    Choices the paper leaves open: the BatchNorm clamp costs one pass over the
    channels, so it runs after every step (the FastClip code clamps every ``bn_count``
    steps); ``directions`` (the FastClip code tracks ``k`` vectors and shrinks
    ``clip_rsv_size`` of them, 1 by default): with one direction per clip the others
    grow between clips, and the final clip has to cut many of them at once.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int], *, target: float, clip_every: int = 50,
                 bn: Literal["ignore", "remove", "composite"] = "ignore", two_sided: bool = False,
                 directions: int = 4, iters: int = 20, final_iters: int = 100, seed: int = 0) -> None:
        if not target > 0:
            raise ValueError(f"target must be > 0, got {target}")
        if clip_every < 1:
            raise ValueError(f"clip_every must be >= 1, got {clip_every}")
        if directions < 1:
            raise ValueError(f"directions must be >= 1, got {directions}")
        self.layers = affine_layers(model, input_shape, bn)
        for layer in self.layers:
            if _split(layer)[1] is not None:
                check_batch_norm(_split(layer)[1])
        self.target = target
        self.clip_every = clip_every
        self.two_sided = two_sided
        self.directions = directions
        self.iters = iters
        self.final_iters = final_iters
        self.generator = torch.Generator().manual_seed(seed)
        self.vectors: dict[str, torch.Tensor] = {}
        self.sigmas: dict[str, float] = {}

    def on_step(self, model: nn.Module, step: int) -> None:
        for layer in self.layers:
            bn = _split(layer)[1]
            if step % self.clip_every == 0:
                self._track_and_clip(layer)
            elif bn is not None:
                clamp_batch_norm_(bn, self.target)

    def on_train_end(self, model: nn.Module) -> None:
        self.clip_all()

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "vectors": dict(self.vectors), "sigmas": dict(self.sigmas)}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.vectors = dict(state["vectors"])
        self.sigmas = dict(state["sigmas"])

    def _track_and_clip(self, layer: AffineLayer) -> None:
        weighted, bn = _split(layer)
        size = int(torch.Size(layer.input_shape).numel())
        sigmas, vectors = top_singular(weighted, layer.input_shape, min(self.directions, size), self.iters,
                                       oversample=2, init=self.vectors.get(layer.name), generator=self.generator)
        scales = clip_scales(sigmas, self.target, self.two_sided, tol=0.0)
        sigma = float(sigmas[0])
        if scales is not None:
            moved = scales != 1
            shrink_(weighted, layer.input_shape, vectors[moved], scales[moved])
            sigma = self.target
        gain = 1.0 if bn is None else clamp_batch_norm_(bn, self.target)
        self.vectors[layer.name] = vectors
        self.sigmas[layer.name] = sigma * gain

    def clip_all(self) -> dict[str, float]:
        """Clip every layer fully (verified); returns {layer name: its norm after clipping}: the
        largest singular value, and for a conv + BatchNorm pair the conv's times the largest
        BatchNorm gain (an upper bound of the pair's norm)."""
        for layer in self.layers:
            weighted, bn = _split(layer)
            sigma, vector = clip_with_vector(weighted, layer.input_shape, self.target, two_sided=self.two_sided,
                                             iters=self.final_iters, generator=self.generator)
            gain = 1.0 if bn is None else clamp_batch_norm_(bn, self.target)
            self.vectors[layer.name] = vector
            self.sigmas[layer.name] = sigma * gain
        return dict(self.sigmas)


def _split(layer: AffineLayer) -> tuple[nn.Module, nn.Module | None]:
    """The layer's Linear / Conv and the BatchNorm paired with it (None outside composite mode)."""
    if isinstance(layer.module, nn.Sequential):
        return layer.module[0], layer.module[1]
    return layer.module, None


def clipping_callbacks(model: nn.Module, input_shape: Sequence[int], cfg, seed: int) -> list[Callback]:
    """The training callbacks that ``cfg`` (:class:`unlearn.config.LipschitzConfig`) asks
    for: none, or one :class:`FastClip` with its settings."""
    if cfg.method == "none":
        return []
    return [FastClip(model, input_shape, target=cfg.target, clip_every=cfg.clip_every, bn=cfg.bn,
                     two_sided=cfg.two_sided, iters=cfg.iters, seed=seed)]
