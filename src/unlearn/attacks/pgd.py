"""Untargeted L2 projected gradient descent (Madry et al., ICLR 2018)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from unlearn.device import forward
from unlearn.training import train_mode


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))


def pgd_l2(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float | torch.Tensor,
    steps: int = 50,
    step_size: float | torch.Tensor | None = None,
    stop_when_wrong: bool = False,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """L2 PGD: maximise the cross-entropy of ``labels`` within ``||x_adv - x||_2 <= eps``
    (the margin loss for a sample whose softmax saturates, see :func:`attack_loss`).

    Each step moves every sample by ``step_size`` (default ``eps / 10``, as AMUN uses)
    along its own gradient normalised to unit L2 norm, projects back onto the eps-ball
    around the clean image and clamps to [0, 1]. The start is the clean image (no random
    start) unless ``start`` is given, so ``eps = 0`` returns ``images`` exactly. With
    ``stop_when_wrong``, a sample leaves the batch (no more forward or backward passes)
    as soon as the model misclassifies it.

    Parameters
    ----------
    images : float (N, C, H, W) in [0, 1].
    labels : int64 (N,).
    eps, step_size : a float, or a float tensor (N,) for a per-sample budget.
    start : float (N, C, H, W), a point inside each eps-ball to continue from.

    Returns
    -------
    float (N, C, H, W) in [0, 1], each within L2 distance ``eps`` of its image.
    The model is evaluated in eval mode; its mode is restored afterwards. Everything runs
    on the device of ``images`` (the model's), forward passes in the current precision.
    """
    n = len(images)
    eps_t = torch.as_tensor(eps, dtype=images.dtype, device=images.device).expand(n).clone()
    step_t = (eps_t / 10 if step_size is None
              else torch.as_tensor(step_size, dtype=images.dtype, device=images.device).expand(n).clone())
    if (eps_t < 0).any() or steps < 0:
        raise ValueError(f"eps and steps must be >= 0, got eps min {eps_t.min().item()}, steps={steps}")
    x_adv = (images if start is None else start).detach().clone()
    run = _compacting if images.device.type == "cpu" else _masked
    with train_mode(model, False), torch.enable_grad():
        return run(model, images, labels, x_adv, eps_t, step_t, steps, stop_when_wrong).detach()


def attack_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The sum over samples of what PGD ascends: the cross-entropy of ``labels`` (AMUN's
    loss), or, for a sample whose softmax saturates, the margin ``max_{j != y} z_j - z_y``
    (Carlini & Wagner, 2017).

    A model fitted confidently (a logit gap above about 17 in float32) has p_y == 1
    exactly: the cross-entropy is 0, its gradient on the true logit is exactly 0 and on the
    others about 1e-15, so its input gradient points only at raising the runner-up (or
    underflows), and PGD needed an L2 budget of 164 on 8x8 digits whose diameter is 8.
    The margin's gradient does not vanish. AMUN's code (``pgdl2_modified.py``) ascends the
    cross-entropy only, dividing its gradient by ``norm + 1e-10``, so such a sample does
    not move there at any budget; this departs from it only for those samples (p_y == 1,
    i.e. a cross-entropy of exactly 0): every other sample's gradient is bit-identical
    to the cross-entropy's, and no step waits for the device to decide."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    z = logits.float()
    true = z.gather(1, labels.view(-1, 1)).squeeze(1)
    runner_up = z.scatter(1, labels.view(-1, 1), float("-inf")).amax(1)
    return torch.where(ce.detach() == 0, runner_up - true, ce).sum()


def _l2_step(x: torch.Tensor, grad: torch.Tensor, images: torch.Tensor, eps: torch.Tensor,
             step: torch.Tensor) -> torch.Tensor:
    """One normalised-gradient step of size ``step``, projected onto the eps-balls and [0, 1]."""
    shape = (-1,) + (1,) * (images.dim() - 1)
    # the smallest positive float, not 1e-12: a confident model's gradient can be 1e-17 and
    # still point the way; only an exact zero (underflow) leaves the sample where it is
    direction = grad / _per_sample_norm(grad).clamp_min(torch.finfo(grad.dtype).tiny)
    delta = x + step.view(shape) * direction - images
    delta = delta * (eps.view(shape) / _per_sample_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
    return (images + delta).clamp(0.0, 1.0)


def _compacting(model, images, labels, x_adv, eps_t, step_t, steps, stop_when_wrong):
    """The CPU path: each step runs only the samples still active (gathered by index), so a
    sample that has left costs nothing; the index reads are free on the CPU."""
    active = eps_t > 0
    for _ in range(steps):
        idx = active.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        x = x_adv[idx].clone().requires_grad_(True)
        logits = forward(model, x)
        if stop_when_wrong:
            still = logits.argmax(1) == labels[idx]
            active[idx[~still]] = False
        (grad,) = torch.autograd.grad(attack_loss(logits, labels[idx]), x)
        with torch.no_grad():
            if stop_when_wrong:
                idx, x, grad = idx[still], x[still], grad[still]
            x_adv[idx] = _l2_step(x, grad, images[idx], eps_t[idx], step_t[idx])
    return x_adv


def _masked(model, images, labels, x_adv, eps_t, step_t, steps, stop_when_wrong, check_every: int = 10):
    """The accelerator path: every step runs the whole batch and a mask keeps the samples
    that have left where they are, so no step waits for the device (no ``nonzero``, no
    boolean indexing); whether any sample is still active is read every ``check_every``
    steps. Each sample follows the same trajectory as on the CPU path."""
    active = eps_t > 0
    shape = (-1,) + (1,) * (images.dim() - 1)
    for step in range(steps):
        if step % check_every == 0 and not bool(active.any()):
            break
        x = x_adv.clone().requires_grad_(True)
        logits = forward(model, x)
        if stop_when_wrong:
            active = active & (logits.argmax(1) == labels)
        (grad,) = torch.autograd.grad(attack_loss(logits, labels), x)
        with torch.no_grad():
            x_adv = torch.where(active.view(shape), _l2_step(x, grad, images, eps_t, step_t), x_adv)
    return x_adv


def pgd_linf(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    steps: int = 50,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L-infinity PGD (Madry et al., ICLR 2018): maximise the cross-entropy of ``labels``
    within ``||x_adv - x||_inf <= eps``, from a uniform random start in the eps-box, with
    steps of ``step_size`` (default ``eps / 10``) along the gradient's sign, each followed
    by the projection onto the box and a clamp to [0, 1] (the setting of the LOTOS
    transferability study). ``generator`` (CPU) draws the random start.

    Returns float (N, C, H, W) in [0, 1]; the model's mode is restored afterwards."""
    if eps < 0 or steps < 0:
        raise ValueError(f"eps and steps must be >= 0, got eps={eps}, steps={steps}")
    step = eps / 10 if step_size is None else step_size
    noise = torch.rand(images.shape, generator=generator).to(images.device, images.dtype)
    x_adv = (images + (2 * noise - 1) * eps).clamp(0.0, 1.0)
    with train_mode(model, False), torch.enable_grad():
        for _ in range(steps):
            x = x_adv.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(forward(model, x), labels, reduction="sum"), x)
            with torch.no_grad():
                x_adv = torch.min(torch.max(x + step * grad.sign(), images - eps), images + eps).clamp(0.0, 1.0)
    return x_adv.detach()
