"""Untargeted L2 projected gradient descent (Madry et al., ICLR 2018)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from unlearn.training import train_mode


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))


def pgd_l2(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    steps: int = 50,
    step_size: float | None = None,
    stop_when_wrong: bool = False,
) -> torch.Tensor:
    """L2 PGD: maximise the cross-entropy of ``labels`` within ``||x_adv - x||_2 <= eps``.

    Each step moves every sample by ``step_size`` (default ``eps / 10``, as AMUN uses)
    along its own gradient normalised to unit L2 norm, projects back onto the eps-ball
    around the clean image and clamps to [0, 1]. The start is the clean image (no random
    start), so ``eps = 0`` returns ``images`` exactly. With ``stop_when_wrong``, a sample
    stops moving as soon as the model misclassifies it.

    Parameters
    ----------
    images : float (N, C, H, W) in [0, 1].
    labels : int64 (N,).

    Returns
    -------
    float (N, C, H, W) in [0, 1], each within L2 distance ``eps`` of its image.
    The model is evaluated in eval mode; its mode is restored afterwards.
    """
    if eps < 0 or steps < 0:
        raise ValueError(f"eps and steps must be >= 0, got eps={eps}, steps={steps}")
    step = eps / 10 if step_size is None else step_size
    x_adv = images.detach().clone()
    if eps == 0 or steps == 0:
        return x_adv
    active = torch.ones(len(images), dtype=torch.bool)
    with train_mode(model, False), torch.enable_grad():
        for _ in range(steps):
            x = x_adv.clone().requires_grad_(True)
            logits = model(x)
            if stop_when_wrong:
                active &= logits.argmax(1) == labels
                if not active.any():
                    break
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), x)
            with torch.no_grad():
                direction = grad / _per_sample_norm(grad).clamp_min(1e-12)
                moved = x_adv + step * direction * active.view(-1, *([1] * (x.dim() - 1)))
                delta = moved - images
                delta = delta * (eps / _per_sample_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
                x_adv = (images + delta).clamp(0.0, 1.0)
    return x_adv.detach()
