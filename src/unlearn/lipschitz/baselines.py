"""Baselines to compare FastClip's spectral norms with.

* :func:`dense_singular_values`: ground truth, an SVD of the operator's full Jacobian
  (feasible for small layers only).
* :func:`reshaped_kernel_norm`: the largest singular value of the kernel reshaped to
  (out_channels, in_channels * k...), which is what ``torch.nn.utils.spectral_norm``
  (Miyato et al. 2018) normalises; it is not the operator norm of a convolution.
* :func:`fft_circular_norm`: Sedghi, Gupta, Long (ICLR 2019): per-frequency SVDs of the
  kernel's 2-D FFT; exact for stride-1 convolutions with circular padding only.
* :func:`gram_iteration_bound`: Delattre, Barthelemy, Araujo, Allauzen (ICML 2023):
  an upper bound by Gram iteration on the per-frequency matrices (circular padding,
  stride 1, single group).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from unlearn.lipschitz.operator import LinearPart
from unlearn.training import train_mode


def dense_singular_values(module: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """All singular values (descending, float64) of the module's linear part, via its Jacobian."""
    with train_mode(module, False):
        op = LinearPart(module, input_shape)
        eye = torch.eye(op.size, dtype=op.dtype).reshape(op.size, *op.input_shape)
        with torch.no_grad():
            columns = torch.cat([op(chunk).reshape(len(chunk), -1) for chunk in eye.split(256)])  # rows = A e_i
    return torch.linalg.svdvals(columns.double())


def reshaped_kernel_norm(conv: nn.Module) -> float:
    """Largest singular value of the weight reshaped to a matrix (out, rest)."""
    weight = conv.weight.detach()
    return float(torch.linalg.matrix_norm(weight.reshape(weight.shape[0], -1).double(), ord=2))


def _frequency_matrices(conv: nn.Conv2d, size: tuple[int, int]) -> torch.Tensor:
    """(H*W, out, in) complex matrices of a conv2d's kernel at every 2-D frequency.

    Defined for stride 1, dilation 1, one group; for zero padding the result is the
    norm of the circular convolution with the same kernel (an approximation).
    """
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.stride != (1, 1) or conv.dilation != (1, 1):
        raise ValueError("the FFT baselines need a Conv2d with stride 1, dilation 1 and groups 1")
    weight = conv.weight.detach().double()
    spectrum = torch.fft.fft2(weight, s=size)  # (out, in, H, W)
    return spectrum.permute(2, 3, 0, 1).reshape(-1, weight.shape[0], weight.shape[1])


def fft_circular_norm(conv: nn.Conv2d, input_shape: Sequence[int]) -> float:
    """Sedghi et al.: max over frequencies of the largest singular value (stride 1, circular padding)."""
    _, height, width = input_shape
    return float(torch.linalg.matrix_norm(_frequency_matrices(conv, (height, width)), ord=2).max())


def gram_iteration_bound(conv: nn.Conv2d, input_shape: Sequence[int], iters: int = 6) -> float:
    """Delattre et al.: Gram iteration ``G <- G^H G`` on every frequency matrix, with rescaling
    to avoid overflow; ``||G_t||_F^(1/2^t)`` bounds the largest singular value from above."""
    _, height, width = input_shape
    g = _frequency_matrices(conv, (height, width))
    log_scale = torch.zeros(g.shape[0], dtype=torch.float64)
    for t in range(iters):
        norm = torch.linalg.matrix_norm(g, ord="fro")
        g = g / norm.view(-1, 1, 1)
        log_scale = 2 * (log_scale + torch.log(norm))
        g = g.mH @ g
    final = torch.linalg.matrix_norm(g, ord="fro")
    bounds = torch.exp((log_scale + torch.log(final)) / 2**iters)
    return float(bounds.max())
