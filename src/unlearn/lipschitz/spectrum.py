"""Top singular values and vectors of an implicitly linear layer by autograd power iteration."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from unlearn.device import exact
from unlearn.lipschitz.operator import LinearPart
from unlearn.training import train_mode


def _orthonormal_rows(x: torch.Tensor) -> torch.Tensor:
    """QR-orthonormalise the k rows of x (k, n), with a sign convention making R's diagonal >= 0."""
    q, r = torch.linalg.qr(x.T)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1
    return (q * signs).T


@exact()
def top_singular(
    module: nn.Module,
    input_shape: Sequence[int],
    k: int = 1,
    iters: int = 100,
    *,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    oversample: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest singular values of the linear part of ``module`` and their right singular vectors.

    ``module`` is a Linear, Conv1d/Conv2d (any padding mode, stride, dilation, groups),
    BatchNorm, pooling, or a Sequential of them (e.g. conv + BatchNorm), seen as the
    operator ``A x = module(x) - module(0)`` on inputs of shape ``input_shape``
    (``(features,)``, ``(C, L)`` or ``(C, H, W)``). BatchNorm is evaluated with its
    running statistics (eval mode), the map it applies at inference.

    Each iteration computes ``A^T A X`` as the gradient of ``0.5 ||A X||^2`` with respect
    to the vectors ``X`` and orthonormalises it by QR.

    Choices the paper leaves open or that differ from it: the paper orthonormalises
    ``X + A^T A X``; that shift by the identity makes the i-th value converge at the
    rate ``(1 + sigma_{i+1}^2) / (1 + sigma_i^2)`` per iteration instead of
    ``sigma_{i+1}^2 / sigma_i^2``: for close values it needs ``1 + 1 / sigma_i^2`` times as
    many iterations (2 at ``sigma = 1``, 5 at ``sigma = 0.5``), so it is left out. The iteration carries
    ``oversample`` extra vectors (convolutions have clustered spectra, and the top
    value converges at the rate of the gap to the (k + oversample + 1)-th instead of
    the (k + 1)-th), and the values returned come from a final Rayleigh-Ritz step (an
    SVD of the columns ``A X``): at convergence the paper's R_ii reading, before it
    more accurate, and never above the true value. When the output has fewer
    dimensions than the vectors carried, the values past it are 0.

    Parameters
    ----------
    init : (m, *input_shape) warm start for the first m <= k + oversample vectors, e.g. the
        vectors of the previous call; the others start random.
    generator : seeds the random start (of the extra vectors, when ``init`` is given).

    Returns
    -------
    sigmas : (k,) descending.
    vectors : (k, *input_shape), orthonormal.
    """
    if k < 1 or iters < 0 or oversample < 0:
        raise ValueError(f"k must be >= 1, iters and oversample >= 0; got k={k}, iters={iters}, oversample={oversample}")
    with train_mode(module, False):
        op = LinearPart(module, input_shape)
        if k > op.size:
            raise ValueError(f"k={k} exceeds the input dimension {op.size}")
        count = min(k + oversample, op.size)
        x = torch.randn(count, op.size, generator=generator, dtype=op.dtype).to(op.device)
        if init is not None:
            if tuple(init.shape[1:]) != op.input_shape or not 0 < len(init) <= count:
                raise ValueError(f"init has shape {tuple(init.shape)}, expected (m, *{op.input_shape}) with m <= {count}")
            x[: len(init)] = init.detach().reshape(len(init), -1).to(x)
        x = _orthonormal_rows(x)
        for _ in range(iters):
            x = _orthonormal_rows(_gram(op, x))
        with torch.no_grad():
            sigmas, vectors = _ritz(op, x)
    return sigmas[:k], vectors[:k].reshape(k, *op.input_shape)


def _ritz(op: LinearPart, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rayleigh-Ritz on the span of the orthonormal rows of x (count, n): the singular values
    of A restricted to it (count,), descending, and the matching orthonormal vectors (count, n).

    With fewer outputs than vectors (n_out < count) the values past n_out are 0, with
    vectors completing the basis of the span.
    """
    count = len(x)
    ax = op(x.reshape(count, *op.input_shape)).reshape(count, -1)
    u, sigmas, _ = torch.linalg.svd(ax, full_matrices=False)  # ax = U S Vh; U (count, min(count, n_out))
    if len(sigmas) < count:
        u = torch.cat([u, torch.linalg.qr(u, mode="complete")[0][:, len(sigmas):]], dim=1)
        sigmas = torch.cat([sigmas, sigmas.new_zeros(count - len(sigmas))])
    return sigmas, u.T @ x


def _gram(op: LinearPart, x: torch.Tensor) -> torch.Tensor:
    """A^T A x for each row of x (k, n), by autograd."""
    rows = x.detach().reshape(len(x), *op.input_shape).requires_grad_(True)
    with torch.enable_grad():
        out = op(rows)
        (grad,) = torch.autograd.grad(0.5 * out.pow(2).sum(), rows)
    return grad.reshape(len(x), -1)
