"""Implicit clipping of a layer's largest singular value (FastClip)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

from unlearn.lipschitz.operator import LinearPart, weight_of
from unlearn.lipschitz.spectrum import top_singular
from unlearn.training import train_mode


def clip_(
    module: nn.Module,
    input_shape: Sequence[int],
    target: float,
    *,
    iters: int = 100,
    steps: int = 10,
    max_rounds: int = 10,
    tol: float = 1e-3,
) -> float:
    """Clip ``module`` in place so that its largest singular value is at most ``target``.

    Returns the largest singular value after clipping. A layer already at or below
    ``target`` is left exactly unchanged. See :func:`clip_with_vector` for the method.
    """
    generator = torch.Generator().manual_seed(0)
    sigma, _ = clip_with_vector(module, input_shape, target, iters=iters, steps=steps,
                                max_rounds=max_rounds, tol=tol, generator=generator)
    return sigma


def clip_with_vector(
    module: nn.Module,
    input_shape: Sequence[int],
    target: float,
    *,
    init: torch.Tensor | None = None,
    iters: int = 100,
    steps: int = 10,
    max_rounds: int = 10,
    block: int = 4,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
) -> tuple[float, torch.Tensor]:
    """:func:`clip_`, warm-started from ``init`` (1, *input_shape); also returns the top vector.

    FastClip's implicit clip: with ``v`` the top right singular vector and ``sigma`` its
    value, take gradient steps on the layer's weight ``W`` to minimise
    ``||A_W v - (target / sigma) A_old v||^2`` with ``A_old`` frozen. The objective is
    quadratic in ``W``, so each step uses the exact line-search step size
    ``<r, M g> / ||M g||^2`` (``r`` the residual, ``g`` the gradient, ``M g = A_g v``);
    for a dense layer this is the paper's step of 1/2, and one step gives exactly
    ``W - (sigma - target) u v^T``. For convolutions (whose ``A_W v`` is not a rank-one
    function of ``W``) ``steps`` such steps are taken.

    Choices the paper leaves open: when several singular values exceed the target
    (a large clip), the top ``block`` directions are estimated together and every one
    above the target is shrunk in the same objective (summed), and the whole clip is
    repeated for up to ``max_rounds`` rounds while the largest value exceeds
    ``target * (1 + tol)``. After a shrink, ``v`` is (close to) a singular vector of
    value ``target``, where a warm-started power iteration would stay, so each
    re-estimate starts from fresh random vectors (``generator``): the value returned is
    the layer's true largest singular value (up to the power iteration's accuracy:
    slightly low when the top of the spectrum is clustered, as it is after a clip). The weight clipped is the first
    Linear/Conv weight in ``module`` (for conv + BatchNorm, the conv's; BatchNorm's
    running statistics stay).
    """
    if not target > 0:
        raise ValueError(f"target must be > 0, got {target}")
    weight = weight_of(module)
    size = int(torch.Size(input_shape).numel())
    sigmas, vectors = top_singular(module, input_shape, min(block, size), iters, init=init, generator=generator)
    for _ in range(max_rounds):
        if float(sigmas[0]) <= target * (1 + tol):
            break
        above = sigmas > target
        shrink_(module, input_shape, vectors[above], target / sigmas[above], steps)
        sigmas, vectors = top_singular(module, input_shape, min(block, size), iters, generator=generator)
    if not torch.isfinite(weight).all():
        raise FloatingPointError("clipping produced non-finite weights")
    return float(sigmas[0]), vectors[:1]


def shrink_(module: nn.Module, input_shape: Sequence[int], vectors: torch.Tensor, scales: torch.Tensor,
            steps: int = 10) -> None:
    """Scale the layer's response to each of ``vectors`` (m, *input_shape) by ``scales`` (m,), in place:
    steepest descent with exact line search on ``sum_i ||A_W v_i - scale_i A_old v_i||^2``."""
    weight = weight_of(module)
    name = next(n for n, p in module.named_parameters() if p is weight)
    with train_mode(module, False), torch.enable_grad():
        op = LinearPart(module, input_shape)
        shape = (-1,) + (1,) * (vectors.dim() - 1)
        with torch.no_grad():
            goal = scales.view(shape).to(vectors.dtype) * op(vectors)
        for _ in range(steps):
            w = weight.detach().clone().requires_grad_(True)
            residual = _apply(module, name, w, vectors) - goal
            (grad,) = torch.autograd.grad(residual.pow(2).sum(), w)
            with torch.no_grad():
                moved = _apply(module, name, grad, vectors)  # = A_grad v, as A_W v is linear in W
                denom = moved.pow(2).sum()
                if denom <= 0 or not torch.isfinite(denom):
                    break
                weight.sub_((residual * moved).sum() / denom * grad)
                if residual.pow(2).sum() <= 1e-12 * goal.pow(2).sum():
                    break


def _apply(module: nn.Module, name: str, weight: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """A_W v: the module's linear part with ``weight`` substituted for parameter ``name``.

    Computed as f(v) - f(0), so any bias and BatchNorm shift cancel.
    """
    zero = torch.zeros_like(v[:1])
    both = functional_call(module, {name: weight}, (torch.cat([v, zero]),))
    return both[:-1] - both[-1:]
