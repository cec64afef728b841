"""UNSIR (Tarun et al., "Fast Yet Effective Machine Unlearning", IEEE TNNLS 2023): error-maximising
noise for the forgotten class, an impair step on it, and a repair step on kept data."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from unlearn.device import forward, model_device, move
from unlearn.training import train_, train_mode
from unlearn.unlearning.base import ForgetTask, register


@register("unsir", always_remain=True, tracks=("class",))
def unsir(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """UNSIR, per forgotten class (the forget set's labels):

    1. Noise: ``cfg.noise_samples`` inputs drawn from N(0, 1) (``generator``), in the model's
       input space (pixels before its normalisation, unclamped), optimised by Adam
       (``cfg.noise_lr``, ``cfg.noise_steps`` steps, the model frozen) to minimise
       ``-CE(model(noise), class) + cfg.noise_l2 * mean ||noise||^2``: inputs the model
       finds most wrong for the class.
    2. Impair: ``cfg.epochs`` epochs of the project's fine-tuning recipe (``cfg``'s SGD, lr and
       schedule) on ``cfg.noise_copies`` copies of the noise, labelled with its class, mixed
       with up to ``cfg.remain_per_class`` remain samples of each kept class (drawn with
       ``generator``).
    3. Repair: ``cfg.repair_epochs`` epochs on those remain samples alone, at ``cfg.repair_lr``.

    The authors' notebook (vikram2000b/Fast-Machine-Unlearning, CIFAR-10 ResNet-18): 256 noise
    inputs per class, Adam lr 0.1 for 40 steps, L2 weight 0.1, 20 copies, 1000 retain samples
    per class, one impair epoch (Adam lr 0.02) and one repair epoch (Adam lr 0.01), batch 256.
    Here the impair and repair steps use the project's SGD recipe, so that the studies tune
    their learning rate as every other method's; the noise keeps Adam, as it is an input
    optimisation, not a training recipe."""
    xf, yf = task.split("forget")
    xr, yr = task.split("remain")
    kept = _per_class(yr, cfg.remain_per_class, generator)
    x_kept, y_kept = xr[kept], yr[kept]
    noises, labels = [], []
    for cls in torch.unique(yf).tolist():
        noise = error_maximising_noise(model, cls, (cfg.noise_samples, *xf.shape[1:]), cfg, generator)
        noises.append(move(noise, x_kept.device).repeat(cfg.noise_copies, 1, 1, 1))
        labels.append(torch.full((len(noises[-1]),), cls, dtype=torch.int64, device=y_kept.device))
    train_(model, torch.cat([*noises, x_kept]), torch.cat([*labels, y_kept]), cfg, generator=generator)
    repair = cfg.model_copy(update={"epochs": cfg.repair_epochs, "lr": cfg.repair_lr})
    train_(model, x_kept, y_kept, repair, generator=generator)


def error_maximising_noise(model: nn.Module, cls: int, shape: tuple[int, ...], cfg,
                           generator: torch.Generator) -> torch.Tensor:
    """UNSIR's noise for class ``cls`` (see :func:`unsir`), on the model's device, the model in
    eval mode (its BatchNorm statistics untouched; the authors' notebook optimises it against a
    model in train mode)."""
    device = model_device(model)
    noise = move(torch.randn(shape, generator=generator), device).requires_grad_(True)
    optimizer = torch.optim.Adam([noise], lr=cfg.noise_lr)
    target = torch.full((shape[0],), cls, dtype=torch.int64, device=device)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with train_mode(model, False):
            for _ in range(cfg.noise_steps):
                penalty = noise.square().flatten(1).sum(1).mean()
                loss = -F.cross_entropy(forward(model, noise), target) + cfg.noise_l2 * penalty
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return noise.detach()


def _per_class(labels: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of up to ``limit`` samples of each class of ``labels``, drawn at random (the draw
    on the CPU, from ``generator``: the same on every device), sorted."""
    chosen = []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        order = move(torch.randperm(len(members), generator=generator)[:limit], members.device)
        chosen.append(members[order])
    return torch.sort(torch.cat(chosen)).values
