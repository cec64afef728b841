"""Transferability of adversarial examples between models."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from unlearn.attacks import pgd_l2


def transfer_matrix(
    sources: Mapping[str, nn.Module],
    targets: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    steps: int = 20,
    given_source_fooled: bool = True,
) -> dict[str, dict[str, float]]:
    """Transfer rate (percent) of L2 PGD examples crafted on each source to each target.

    For a (source, target) pair, the rate is the fraction of samples that the target
    misclassifies after the attack, among those that both models classify correctly
    when clean (so a rate measures transfer, not the target's own errors) and, with
    ``given_source_fooled`` (the usual definition of transferability), whose
    adversarial example does fool the source. Without it, the rate also counts the
    source's own robustness (a smoother source is fooled less often at a given eps).

    Parameters
    ----------
    images : float (N, C, H, W) in [0, 1]; labels : int64 (N,).

    Returns
    -------
    ``{source: {target: rate}}``.
    """
    with torch.no_grad():
        clean = {name: _eval(model, images).argmax(1) == labels for name, model in {**sources, **targets}.items()}
    rates: dict[str, dict[str, float]] = {}
    for source_name, source in sources.items():
        adversarial = pgd_l2(source, images, labels, eps=eps, steps=steps)
        with torch.no_grad():
            fooled_source = _eval(source, adversarial).argmax(1) != labels
        rates[source_name] = {}
        for target_name, target in targets.items():
            both = clean[source_name] & clean[target_name]
            if given_source_fooled:
                both &= fooled_source
            with torch.no_grad():
                fooled = _eval(target, adversarial[both]).argmax(1) != labels[both]
            rates[source_name][target_name] = 100.0 * fooled.float().mean().item() if both.any() else float("nan")
    return rates


def _eval(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from unlearn.training import train_mode

    with train_mode(model, False):
        return model(x)
