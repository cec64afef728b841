"""SGD with momentum and weight decay, and its per-epoch learning-rate schedules, without
``torch.optim.Optimizer``.

Why not ``torch.optim.SGD``: every method of torch's ``Optimizer`` (``__init__``, ``step``,
``zero_grad``, ``state_dict``) imports ``torch._dynamo`` on first use, which takes 1.3 s on
the 2-core CI machine (``benchmarks/bench_stage_overhead.py``), and every pipeline stage that
trains is a fresh process that pays it. The update itself is torch's: :meth:`SGD.step`
calls the public functional ``torch.optim.sgd.sgd`` with the arguments ``torch.optim.SGD``
passes (single-tensor on CPU, foreach where torch picks it), and the schedules follow
``torch.optim.lr_scheduler``'s recursive formulas step by step, so training is
bit-identical to ``torch.optim.SGD`` with ``StepLR`` / ``CosineAnnealingLR`` / a constant
``LambdaLR`` (tested).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch.optim.sgd import sgd


class SGD:
    """SGD over one group of parameters, as ``torch.optim.SGD(params, lr, momentum,
    weight_decay)`` (no dampening, no Nesterov). ``lr`` may be changed between steps (the
    schedules do). Parameters without a gradient are skipped, as torch does."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.params = list(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        active = [i for i, p in enumerate(self.params) if p.grad is not None]
        buffers = [self.buffers[i] for i in active]
        sgd([self.params[i] for i in active], [self.params[i].grad for i in active], buffers,
            weight_decay=self.weight_decay, momentum=self.momentum, lr=self.lr, dampening=0.0,
            nesterov=False, maximize=False)
        if self.momentum != 0:
            for i, buffer in zip(active, buffers):
                self.buffers[i] = buffer

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "buffers": list(self.buffers)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["buffers"]) != len(self.params):
            raise ValueError(f"optimiser state has {len(state['buffers'])} parameters, the model {len(self.params)}")
        self.lr = state["lr"]
        self.buffers = [None if b is None else b.to(p.device) for b, p in zip(state["buffers"], self.params)]


class Schedule:
    """Sets ``optimizer.lr`` once per epoch: call :meth:`step` after each epoch, as with
    ``torch.optim.lr_scheduler``. Subclasses give the next rate from the current one."""

    def __init__(self, optimizer: SGD) -> None:
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self) -> None:
        self.epoch += 1
        self.optimizer.lr = self.next_lr(self.optimizer.lr)

    def next_lr(self, lr: float) -> float:
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.base_lr = state["epoch"], state["base_lr"]


class Constant(Schedule):
    """The rate never changes (torch's ``LambdaLR`` with ``lambda epoch: 1.0``)."""


class StepDecay(Schedule):
    """The rate times ``gamma`` every ``step_size`` epochs (torch's ``StepLR``)."""

    def __init__(self, optimizer: SGD, step_size: int, gamma: float) -> None:
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def next_lr(self, lr: float) -> float:
        return lr * self.gamma if self.epoch % self.step_size == 0 else lr


class Cosine(Schedule):
    """Cosine annealing to 0 over ``t_max`` epochs, by the recursive form of torch's
    ``CosineAnnealingLR`` (its float rounding included)."""

    def __init__(self, optimizer: SGD, t_max: int) -> None:
        super().__init__(optimizer)
        self.t_max = t_max

    def next_lr(self, lr: float) -> float:
        eta_min, t, e = 0.0, self.t_max, self.epoch
        if (e - 1 - t) % (2 * t) == 0:
            return lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / t)) / 2
        return (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t)) * (lr - eta_min) + eta_min
