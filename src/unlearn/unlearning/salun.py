"""SalUn's weight saliency (Fan et al., "SalUn: Empowering Machine Unlearning via
Gradient-based Weight Saliency in Both Image Classification and Generation", ICLR 2024).

The mask keeps the weights whose forget-loss gradient is largest in magnitude; only
those are updated during unlearning. The published code masks the gradients before
the optimiser step, so weight decay and momentum still move the masked-out weights;
here they are restored after every step, so they stay bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from unlearn.device import exact, forward, model_device, move, to_batch
from unlearn.training import Callback, train_mode


def saliency_mask(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, fraction: float,
                  batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Boolean masks (one per parameter) selecting the ``fraction`` of all weights with the
    largest |d CE(forget) / d w|, under one global threshold.

    The gradient is of the summed cross-entropy of ``images`` (float, in [0, 1]) with
    their true ``labels``, in eval mode (BatchNorm statistics are not touched) and in
    full float32 (:func:`unlearn.device.exact`: bf16 would round gradients into ties). Ties at
    the threshold are kept, so slightly more than ``fraction`` may be selected.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    grads = {name: torch.zeros_like(p) for name, p in params.items()}
    device = model_device(model)
    with train_mode(model, False), exact():  # the backward pass too: TF32 off for its convolutions
        for x, y in zip(images.split(batch_size), labels.split(batch_size)):
            loss = F.cross_entropy(forward(model, to_batch(x, device)), move(y, device), reduction="sum")
            for name, grad in zip(params, torch.autograd.grad(loss, list(params.values()))):
                grads[name] += grad
    magnitudes = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = max(1, int(round(fraction * magnitudes.numel())))
    threshold = torch.topk(magnitudes, keep, sorted=False).values.min()
    return {name: g.abs() >= threshold for name, g in grads.items()}


class FreezeOutsideMask(Callback):
    """After every optimiser step, put back the weights outside ``masks`` exactly as they were.

    Two foreach ops over all parameters per step (not a ``where`` and a ``copy`` per
    parameter): ``param * keep + frozen_outside``, with ``keep`` 1 inside the mask and 0
    outside, and ``frozen_outside`` the original weight outside and -0.0 inside (``x + -0.0``
    is ``x`` for every x, so the updated weights pass through bit for bit). Outside, a
    weight becomes ``+-0 + frozen``: the frozen value, except that a frozen -0.0 comes back
    as +0.0."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        unknown = set(masks) - set(params)
        if unknown:
            raise ValueError(f"masks name parameters the model lacks: {sorted(unknown)}")
        self.params = [params[name] for name in masks]
        self.keep = [mask.to(params[name].dtype) for name, mask in masks.items()]
        self.frozen = [torch.where(mask, torch.full_like(params[name], -0.0), params[name].detach())
                       for name, mask in masks.items()]

    def on_step(self, model: nn.Module, step: int) -> None:
        with torch.no_grad():
            torch._foreach_mul_(self.params, self.keep)
            torch._foreach_add_(self.params, self.frozen)
