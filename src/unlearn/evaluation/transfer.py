"""Transferability of adversarial examples between models."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from unlearn.training import train_mode

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (model, images, labels) -> adversarial


def transfer_matrix(
    sources: Mapping[str, nn.Module],
    targets: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: Attack,
    norm: str = "l2",
    generator: torch.Generator | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Transfer rate (percent) of the ``attack``'s examples (e.g. L2 or L-infinity PGD)
    crafted on each source to each target.

    For a (source, target) pair, ``rate_unconditional`` is the fraction of samples that
    the target misclassifies after the attack, among those that both models classify
    correctly when clean (so it measures transfer, not the target's own errors);
    ``rate`` (the usual definition of transferability) counts only samples whose
    adversarial example does fool the source, so it does not mix in the source's own
    robustness (a smoother source is fooled less often at a given eps).

    Parameters
    ----------
    images : float (N, C, H, W) in [0, 1]; labels : int64 (N,).

    ``rate_random`` is the chance level of ``rate`` (a positive control): the same
    samples, perturbed instead by a random direction of the same ``norm`` as each
    adversarial perturbation (``l2``: Gaussian; ``linf``: random signs), clamped to [0, 1]
    as the attack's examples are; a target fooled at ``rate`` no more often than at
    ``rate_random`` shows no transfer at all.

    Returns
    -------
    ``{"rate": {source: {target: percent}}, "rate_unconditional": {...}, "rate_random": {...}}``;
    NaN where no sample qualifies.
    """
    with torch.no_grad():
        clean = {name: _eval(model, images).argmax(1) == labels for name, model in {**sources, **targets}.items()}
    rates: dict[str, dict[str, dict[str, float]]] = {"rate": {}, "rate_unconditional": {}, "rate_random": {}}
    for source_name, source in sources.items():
        adversarial = attack(source, images, labels)
        noisy = random_like(adversarial - images, norm, generator).add_(images).clamp_(0, 1)
        with torch.no_grad():
            fooled_source = _eval(source, adversarial).argmax(1) != labels
        for key, condition, examples in (("rate", fooled_source, adversarial),
                                         ("rate_unconditional", torch.ones_like(fooled_source), adversarial),
                                         ("rate_random", fooled_source, noisy)):
            rates[key][source_name] = {}
            for target_name, target in targets.items():
                chosen = clean[source_name] & clean[target_name] & condition
                with torch.no_grad():
                    fooled = _eval(target, examples[chosen]).argmax(1) != labels[chosen]
                rates[key][source_name][target_name] = (100.0 * fooled.float().mean().item() if chosen.any()
                                                        else float("nan"))
    return rates


def random_like(perturbation: torch.Tensor, norm: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random direction per sample with the same ``norm`` (``l2`` or ``linf``) as each
    sample's ``perturbation``: Gaussian rescaled (L2), or random signs times the largest
    entry (L-infinity)."""
    flat = perturbation.flatten(1)
    noise = torch.randn(flat.shape, generator=generator).to(flat.device)
    if norm == "l2":
        size = flat.norm(dim=1, keepdim=True) / noise.norm(dim=1, keepdim=True).clamp_min(1e-12)
    elif norm == "linf":
        noise, size = noise.sign(), flat.abs().amax(dim=1, keepdim=True)
    else:
        raise ValueError(f"norm must be l2 or linf, got {norm!r}")
    return (noise * size).view_as(perturbation)


def _eval(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with train_mode(model, False):
        return model(x)
