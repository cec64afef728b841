"""Implicit clipping of a layer's largest singular value (FastClip)."""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

from unlearn.device import exact
from unlearn.lipschitz.operator import LinearPart, weight_of
from unlearn.lipschitz.spectrum import top_singular
from unlearn.training import train_mode

log = logging.getLogger(__name__)


def clip_(
    module: nn.Module,
    input_shape: Sequence[int],
    target: float,
    *,
    two_sided: bool = False,
    iters: int = 100,
    steps: int = 10,
    max_rounds: int = 30,
    tol: float = 1e-3,
) -> float:
    """Clip ``module`` in place so that its largest singular value is at most ``target``
    (with ``two_sided``, equal to ``target``: a smaller one is raised to it).

    Returns the largest singular value after clipping. With ``two_sided=False`` a layer
    already at or below ``target`` is left exactly unchanged. See
    :func:`clip_with_vector` for the method.
    """
    generator = torch.Generator().manual_seed(0)
    sigma, _ = clip_with_vector(module, input_shape, target, two_sided=two_sided, iters=iters, steps=steps,
                                max_rounds=max_rounds, tol=tol, generator=generator)
    return sigma


@exact()
def clip_with_vector(
    module: nn.Module,
    input_shape: Sequence[int],
    target: float,
    *,
    two_sided: bool = False,
    init: torch.Tensor | None = None,
    iters: int = 100,
    steps: int = 10,
    max_rounds: int = 30,
    block: int = 8,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
) -> tuple[float, torch.Tensor]:
    """:func:`clip_`, warm-started from ``init`` (m <= ``block``, *input_shape); also returns the top vector.

    FastClip's implicit clip: with ``v`` a top right singular vector and ``sigma`` its
    value, take gradient steps on the layer's weight ``W`` to minimise
    ``||A_W v - (target / sigma) A_old v||^2`` with ``A_old`` frozen (:func:`shrink_`).
    The objective is quadratic in ``W``, so each step uses the exact line-search step size
    ``<r, M g> / ||M g||^2`` (``r`` the residual, ``g`` the gradient, ``M g = A_g v``);
    for a dense layer this is the paper's step of 1/2, and one step gives exactly
    ``W - (sigma - target) u v^T``. For convolutions (whose ``A_W v`` is not a rank-one
    function of ``W``) ``steps`` such steps are taken.

    Choices the paper leaves open:

    * Verification. A round estimates the top ``block`` values from fresh random vectors
      (``generator``; after a shrink, ``v`` is a singular vector of value ``target``,
      where a warm-started iteration would stay) with ``iters`` iterations of
      :func:`~unlearn.lipschitz.top_singular`, and shrinks every direction found above
      ``target`` in one summed objective. Rounds repeat, up to ``max_rounds``, until the
      largest value is at most ``target * (1 + tol)``; that estimate is accepted only if
      it stays there after ``iters`` more iterations of the same block (a Ritz value
      only approaches the true value from below, so an unconverged estimate passes too
      early). The value returned is this verified estimate of the largest singular value.
    * Large clips. Clipping to a fraction of the norm pushes down many values (338 of
      1024 for a 16-channel 3x3 conv on 8x8 inputs clipped to half its norm); the block
      doubles, up to the input size, after every round in which all of its values
      were above ``target``.
    * ``two_sided`` (the FastClip code's default for convolutions): when the largest value is below
      ``target * (1 - tol)``, its direction is scaled up to ``target`` by the same
      objective (a zero map stays zero); the rounds then stop when the largest value is
      within ``tol`` of ``target`` on either side.

    The weight clipped is the first Linear/Conv weight in ``module`` (for conv +
    BatchNorm, the conv's; BatchNorm's running statistics stay). A warning is logged
    when ``max_rounds`` end with the largest value outside the tolerance.
    """
    if not target > 0:
        raise ValueError(f"target must be > 0, got {target}")
    weight = weight_of(module)
    size = int(torch.Size(input_shape).numel())
    k = min(block, size)
    sigmas, vectors = top_singular(module, input_shape, k, iters, init=init, oversample=0, generator=generator)
    verified = False
    for _ in range(max_rounds):
        scales = clip_scales(sigmas, target, two_sided, tol)
        if scales is None and verified:
            break
        if scales is None:  # iterate the same block further before accepting
            sigmas, vectors = top_singular(module, input_shape, k, iters, init=vectors, oversample=0,
                                           generator=generator)
            verified = True
            continue
        moved = scales != 1
        shrink_(module, input_shape, vectors[moved], scales[moved], steps)
        if bool((sigmas > target).all()):
            k = min(2 * k, size)
        sigmas, vectors = top_singular(module, input_shape, k, iters, oversample=0, generator=generator)
        verified = False
    if clip_scales(sigmas, target, two_sided, tol) is not None:
        log.warning("clip to %.4g: largest singular value %.4g after %d rounds", target, float(sigmas[0]), max_rounds)
    if not torch.isfinite(weight).all():
        raise FloatingPointError("clipping produced non-finite weights")
    return float(sigmas[0]), vectors[:1]


def clip_scales(sigmas: torch.Tensor, target: float, two_sided: bool, tol: float) -> torch.Tensor | None:
    """The factor that brings each singular value of ``sigmas`` (descending, (k,)) to the clip:
    ``target / sigma`` for every value above ``target``, 1 for the others, and with
    ``two_sided`` ``target / sigma`` for the largest when it is below ``target``.

    Returns None when nothing is to change: the largest value is at most
    ``target * (1 + tol)`` (with ``two_sided``, also at least ``target * (1 - tol)``), or 0.
    """
    top = float(sigmas[0])
    low = target * (1 - tol) if two_sided else 0.0
    if top == 0 or low <= top <= target * (1 + tol):
        return None
    scales = torch.where(sigmas > target, target / sigmas, torch.ones_like(sigmas))
    if top < target:
        scales[0] = target / top
    return scales


def clamp_batch_norm_(bn: nn.Module, target: float) -> float:
    """Clamp a BatchNorm's scale in place so that its per-channel gain is at most ``target``.

    In eval mode BatchNorm is the diagonal map ``x -> gamma * x / sqrt(running_var + eps)``
    plus a shift, so its spectral norm is ``max |gamma| / sqrt(running_var + eps)``; this
    clamps ``gamma`` to ``[-t, t]`` with ``t = target * sqrt(running_var + eps)`` per
    channel, as the FastClip code's BatchNorm clip does. Returns the largest gain after.
    """
    if not target > 0:
        raise ValueError(f"target must be > 0, got {target}")
    check_batch_norm(bn)
    with torch.no_grad():
        scale = torch.sqrt(bn.running_var + bn.eps)
        bn.weight.copy_(torch.clamp(bn.weight, min=-target * scale, max=target * scale))
        return float((bn.weight.abs() / scale).max())


def check_batch_norm(bn: nn.Module) -> None:
    """Raise ValueError unless ``bn`` has a scale and running statistics (what
    :func:`clamp_batch_norm_` bounds)."""
    if getattr(bn, "weight", None) is None or getattr(bn, "running_var", None) is None:
        raise ValueError(f"{type(bn).__name__} needs a scale (affine=True) and running statistics "
                         "(track_running_stats=True) to be clipped")


@exact()
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
