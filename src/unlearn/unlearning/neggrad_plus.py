"""NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): descent on
the remain set and ascent on the forget set, weighted, in paired batches."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from unlearn.device import forward, gather, model_device
from unlearn.training import make_optimizer, make_scheduler, train_mode
from unlearn.unlearning.base import ForgetTask, register


@register("neggrad_plus", always_remain=True)
def neggrad_plus(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """NegGrad+: each step takes the next remain batch (``cfg.batch_size``, a fresh shuffle
    each epoch) and the next forget batch (``cfg.forget_batch_size``; the forget set is cycled,
    reshuffled whenever it runs out) and minimises
    ``cfg.alpha * CE(remain) - (1 - cfg.alpha) * CE(forget)``; an epoch is one pass over remain.
    SGD with the recipe of ``cfg`` (per-epoch schedule).

    As the authors' code (meghdadk/SCRUB, ``thirdparty/repdistiller/helper/loops.py``,
    ``train_negrad``: the model in train mode, no penalty; small-scale CIFAR: alpha 0.95, 10
    epochs, lr 0.01, retain batch 128, forget batch 64). Not taken: their small-scale
    notebook's variant in eval mode with an L2 pull toward the original weights, and their
    plain SGD without momentum (the project's recipe keeps ``cfg.momentum``)."""
    device = model_device(model)
    xf, yf = task.split("forget")
    xr, yr = task.split("remain")
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    forget_batches = _cycled(len(xf), cfg.forget_batch_size or cfg.batch_size, generator)
    with train_mode(model):
        for _ in range(cfg.epochs):
            for idx in torch.randperm(len(xr), generator=generator).split(cfg.batch_size):
                fdx = next(forget_batches)
                remain_loss = F.cross_entropy(forward(model, gather(xr, idx, device)), gather(yr, idx, device))
                forget_loss = F.cross_entropy(forward(model, gather(xf, fdx, device)), gather(yf, fdx, device))
                loss = cfg.alpha * remain_loss - (1 - cfg.alpha) * forget_loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            scheduler.step()


def _cycled(n: int, batch_size: int, generator: torch.Generator):
    """Batches of indices into ``n`` samples, forever: a new shuffle after each pass."""
    while True:
        yield from torch.randperm(n, generator=generator).split(batch_size)
