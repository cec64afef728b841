"""What every unlearning method receives, and the registry that names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from unlearn.attacks import AdversarialSet
from unlearn.registry import Registry
from unlearn.training import to_float


@dataclass(frozen=True)
class ForgetTask:
    """The data an unlearning method may use.

    Attributes
    ----------
    images, labels : the whole dataset, uint8 (N, C, H, W) and int64 (N,).
    forget, remain : int64 index tensors into it (disjoint).
    num_classes : the width of the model's output.
    adversarial : AMUN's D_A of the forget set (row i belongs to ``forget[i]``), when built.
    holdout : indices of samples the model never trained on (e.g. the test split), for
        methods that calibrate on them (TRW's constraint); ``None`` when there are none.
    """

    images: torch.Tensor
    labels: torch.Tensor
    forget: torch.Tensor
    remain: torch.Tensor
    num_classes: int
    adversarial: AdversarialSet | None = None
    holdout: torch.Tensor | None = None

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [0, 1] and labels of split ``name`` (``forget`` or ``remain``)."""
        idx = getattr(self, name)
        return to_float(self.images[idx]), self.labels[idx]


@dataclass(frozen=True)
class Method:
    """An unlearning method: ``run(model, task, cfg, generator)`` changes ``model`` in place.

    ``needs_adversarial``: the method reads ``task.adversarial`` (the pipeline then
    builds D_A first). ``remain_access(cfg)``: whether it reads the remain set.
    ``tracks``: the kinds of forget set it is meant for, ``random`` (samples) and / or
    ``class`` (every training sample of one class).
    """

    run: Callable[[nn.Module, ForgetTask, object, torch.Generator], None]
    needs_adversarial: bool = False
    always_remain: bool | None = None  # True / False when fixed by the method; None: cfg.use_remain
    tracks: tuple[str, ...] = ("random", "class")

    def remain_access(self, cfg) -> bool:
        return self.always_remain if self.always_remain is not None else cfg.use_remain


METHODS: Registry[Method] = Registry("unlearning method")


def register(name: str, *, needs_adversarial: bool = False, always_remain: bool | None = None,
             tracks: tuple[str, ...] = ("random", "class")):
    """Decorator: register ``run`` as method ``name``."""

    def decorator(run):
        METHODS.register(name)(Method(run, needs_adversarial, always_remain, tracks))
        return run

    return decorator
