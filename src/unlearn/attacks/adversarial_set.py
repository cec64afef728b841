"""AMUN's adversarial set D_A: for each sample, an adversarial example at (close to) the
smallest L2 budget on a doubling grid (Ebrahimpour-Boroojeny, Sundaram, Chandrasekaran,
"AMUN: Adversarial Machine UNlearning", ICML 2025, arXiv 2503.00917)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from unlearn.attacks.pgd import pgd_l2
from unlearn.device import forward, model_device, move, to_batch
from unlearn.training import train_mode

if TYPE_CHECKING:
    from unlearn.config import AdversarialConfig


@dataclass(frozen=True)
class AdversarialSet:
    """D_A for N samples.

    Attributes
    ----------
    images : float (N, C, H, W) in [0, 1], the adversarial examples.
    labels : int64 (N,), the model's (wrong) prediction on them: AMUN's training labels.
    eps : float (N,), the budget at which each became misclassified (0 if it already was).
    distance : float (N,), ``||x_adv - x||_2``.
    capped : bool (N,), still correctly classified at the largest budget tried.
    """

    images: torch.Tensor
    labels: torch.Tensor
    eps: torch.Tensor
    distance: torch.Tensor
    capped: torch.Tensor


def adversarial_set(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps_init: float,
    steps: int = 50,
    max_doublings: int = 10,
    batch_size: int = 512,
) -> AdversarialSet:
    """Build D_A for ``images`` (float (N, C, H, W) in [0, 1]) with true ``labels`` (N,).

    Each sample starts at ``eps = eps_init`` and runs ``steps`` of L2 PGD (step eps/10)
    and leaves as soon as it is misclassified; a sample still correct after the steps
    has its eps doubled and continues from where it is, up to ``max_doublings`` times and
    never beyond the diameter of the input space, ``sqrt(C * H * W)`` for [0, 1] images
    (a larger ball holds no further image; the last round runs at the diameter). ``capped``
    marks the samples never misclassified. PGD ascends the margin instead of the
    cross-entropy for a sample whose softmax saturates (:func:`unlearn.attacks.pgd.attack_loss`),
    so a confidently fitted model still gets its nearest adversarial examples. A sample
    already misclassified keeps x_adv = x, eps = 0 and its predicted label. Work is batched and only samples still
    correctly classified are attacked, on the model's device (where D_A's tensors stay).
    Whether a sample is misclassified, and its label in D_A, are read in the precision
    PGD's steps run in (the current :func:`unlearn.device.precision`), so that the search
    and its stopping rule agree: under bf16 a sample that PGD saw cross the boundary may
    still be classified correctly in float32 (it sits on the boundary), and a float32
    check would send it back to a PGD that stops at once, up to the budget cap.
    ``benchmarks/gpu_check.py`` reports how many D_A labels float32 would give otherwise.
    """
    if not eps_init > 0:
        raise ValueError(f"eps_init must be > 0, got {eps_init}")
    device = model_device(model)
    parts = [_one_batch(model, to_batch(x, device), move(y, device), eps_init, steps, max_doublings)
             for x, y in zip(images.split(batch_size), labels.split(batch_size))]
    return AdversarialSet(*(torch.cat(field) for field in zip(*parts)))


def _one_batch(model, images, labels, eps_init, steps, max_doublings):
    x_adv = images.clone()
    eps = torch.zeros(len(images), device=images.device)
    with torch.no_grad(), train_mode(model, False):
        correct = forward(model, images).argmax(1) == labels
    diameter = input_diameter(images)
    for doubling in range(max_doublings + 1):
        idx = correct.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        budget = min(eps_init * 2 ** doubling, diameter)
        x_adv[idx] = pgd_l2(model, images[idx], labels[idx], eps=budget, steps=steps, stop_when_wrong=True,
                            start=x_adv[idx])
        eps[idx] = budget
        with torch.no_grad(), train_mode(model, False):
            correct[idx] = forward(model, x_adv[idx]).argmax(1) == labels[idx]
        if budget == diameter:
            break
    with torch.no_grad(), train_mode(model, False):
        predicted = forward(model, x_adv).argmax(1)
    distance = (x_adv - images).flatten(1).norm(dim=1)
    return x_adv, predicted, eps, distance, predicted == labels


def input_diameter(images: torch.Tensor) -> float:
    """The L2 diameter of [0, 1]^(C x H x W): no budget beyond it reaches a further image."""
    return math.sqrt(images[0].numel())


def calibrate_eps_init(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                       success: float = 0.95, start: float = 0.01, steps: int = 50) -> float:
    """The L2 budget within which a fraction ``success`` of ``images`` (e.g. 100 samples)
    can be misclassified: the ``success`` quantile of the distances D_A needs from a
    small ``start`` budget (samples already misclassified count as distance 0)."""
    if not 0 < success <= 1:
        raise ValueError(f"success must be in (0, 1], got {success}")
    found = adversarial_set(model, images, labels, eps_init=start, steps=steps, max_doublings=20)
    return max(float(torch.quantile(found.distance, success)), start)


def choose_eps_init(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: AdversarialConfig,
                    seed: int) -> float:
    """D_A's first budget: ``cfg.eps_init`` when set, else :func:`calibrate_eps_init` on a
    seeded random ``cfg.calibration_samples`` of ``images`` (the forget set)."""
    if cfg.eps_init is not None:
        return cfg.eps_init
    chosen = np.sort(np.random.default_rng([seed, 3]).permutation(len(images))[:cfg.calibration_samples])
    return calibrate_eps_init(model, images[chosen], labels[chosen], success=cfg.calibration_success,
                              steps=cfg.calibration_steps)
