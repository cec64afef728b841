"""SSD, Selective Synaptic Dampening (Foster, Schoepf and Brintrup, AAAI 2024): training-free
unlearning from diagonal Fisher importances."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from unlearn.device import forward, model_device, move, to_batch
from unlearn.training import train_mode
from unlearn.unlearning.base import ForgetTask, register


@register("ssd", always_remain=True)
def selective_synaptic_dampening(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """SSD: every trainable parameter whose importance to the forget set exceeds ``cfg.alpha``
    times its importance to the whole training set (remain and forget) is multiplied by
    ``min(1, cfg.dampening * importance_D / importance_forget)``; the rest stay bit-identical.
    No gradient step, no learning rate: ``alpha`` (the paper's selection weighting) and
    ``dampening`` (its lambda) are the knobs.

    As the authors' code (if-loops/selective-synaptic-dampening, ``src/ssd.py``): the
    importance of a parameter is the mean over batches (``cfg.batch_size``, in index order) of
    its squared gradient of the batch's mean cross-entropy to the true labels, with the model
    in eval mode; BatchNorm's weights and biases count as parameters, its running statistics
    are left alone. Their ResNet-18 settings are ``alpha`` 10, ``dampening`` 1 (full-class,
    sub-class and random forgetting alike), their batch 64 (class) or 128 (random).
    ``generator`` is unused: the method is deterministic."""
    xf, yf = task.split("forget")
    xr, yr = task.split("remain")
    params = [p for p in model.parameters() if p.requires_grad]
    forget = importances(model, params, xf, yf, cfg.batch_size)
    whole = importances(model, params, torch.cat([xr, xf]), torch.cat([yr, yf]), cfg.batch_size)
    with torch.no_grad():
        for p, on_forget, on_whole in zip(params, forget, whole):
            selected = on_forget > cfg.alpha * on_whole
            factor = (cfg.dampening * on_whole / on_forget).clamp(max=1.0)
            p[selected] = p[selected] * factor[selected]


def importances(model: nn.Module, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                batch_size: int) -> list[torch.Tensor]:
    """Per parameter of ``params``: the mean over batches of the squared gradient of the
    batch's mean cross-entropy (the diagonal Fisher estimate SSD uses), in eval mode."""
    device = model_device(model)
    totals = [torch.zeros_like(p) for p in params]
    batches = 0
    with train_mode(model, False):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            loss = F.cross_entropy(forward(model, to_batch(move(xb, device), device)), move(yb, device))
            grads = [torch.zeros_like(p) if g is None else g
                     for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True))]
            torch._foreach_addcmul_(totals, grads, grads)
            batches += 1
    torch._foreach_div_(totals, float(max(batches, 1)))
    return totals
