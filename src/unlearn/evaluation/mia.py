"""Membership-inference attacks that use reference models: RMIA and LiRA.

Every attack takes per-sample signals and returns one score per sample, **higher =
more likely a member** of the target model's training set. Shapes: N samples, K
reference models, C classes. ``keep`` (K, N) bool says which samples each reference
model was trained on (IN) and which it was not (OUT).

Signals (from logits, computed once per model and cached by the pipeline):

- :func:`true_class_probability`: softmax probability of the true class; with
  ``kind="taylor_soft_margin"`` the soft-margin Taylor softmax used by the RMIA
  authors' code and the thesis (temperature T, margin m, Taylor polynomial with
  powers 0..order-1): ``t(l) = sum_i l^i / i!``, ``s = t(z_y/T - m) / (t(z_y/T - m) + sum_{j!=y} t(z_j/T))``.
- :func:`scaled_logit`: LiRA's ``phi = log(p / (1 - p))`` computed stably as the true-class
  logit minus the log-sum-exp of the others.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def true_class_probability(logits: torch.Tensor, labels: torch.Tensor, *, kind: str = "softmax",
                           temperature: float = 2.0, margin: float = 0.6, order: int = 4) -> np.ndarray:
    """Pr(x | theta) for logits (..., N, C) and labels (N,): an array of shape (..., N), float64.

    ``kind``: ``softmax`` or ``taylor_soft_margin`` (defaults T = 2, m = 0.6, order 4,
    the RMIA code's CIFAR-10 setting that AMUN uses).
    """
    logits = logits.double()
    index = _true_index(logits, labels)
    if kind == "softmax":
        return torch.softmax(logits, dim=-1).gather(-1, index).squeeze(-1).numpy()
    if kind != "taylor_soft_margin":
        raise ValueError(f"unknown signal kind {kind!r}; known: softmax, taylor_soft_margin")
    scaled = logits / temperature
    true = _taylor(scaled.gather(-1, index).squeeze(-1) - margin, order)
    others = _taylor(scaled, order).sum(-1) - _taylor(scaled.gather(-1, index).squeeze(-1), order)
    return (true / (true + others)).numpy()


def _true_index(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Index (..., N, 1) of each sample's true class, for ``gather`` on logits (..., N, C)."""
    return labels.view(*([1] * (logits.dim() - 2)), -1, 1).expand(*logits.shape[:-1], 1)


def _taylor(x: torch.Tensor, order: int) -> torch.Tensor:
    """sum_{i=0}^{order-1} x^i / i!, as the RMIA authors' code computes it (order 4: a cubic).

    A polynomial of odd degree is negative for very negative inputs (a cubic below about
    -1.6), which the authors' code lets through; here each term is clamped at 1e-30 so
    the signal stays a probability (a documented deviation; ``order=3`` gives the
    quadratic, which is always positive)."""
    total = torch.ones_like(x)
    term = torch.ones_like(x)
    for i in range(1, order):
        term = term * x / i
        total = total + term
    return total.clamp_min(1e-30)


def scaled_logit(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """LiRA's phi = log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j, shape (..., N), float64."""
    logits = logits.double()
    index = _true_index(logits, labels)
    true = logits.gather(-1, index).squeeze(-1)
    others = logits.scatter(-1, index, -math.inf).logsumexp(-1)
    return (true - others).numpy()


def _check(target: np.ndarray, reference: np.ndarray, keep: np.ndarray) -> None:
    if reference.ndim != 2 or keep.shape != reference.shape or target.shape != reference.shape[1:]:
        raise ValueError(f"shapes do not match: target {target.shape}, reference {reference.shape} "
                         f"(K, N), keep {keep.shape} (K, N)")
    if not (np.isfinite(target).all() and np.isfinite(reference).all()):
        raise ValueError("signals contain NaN or infinite values (a diverged model?)")


def _need(keep: np.ndarray, member: bool, at_least: int, mode: str) -> None:
    counts = (keep if member else ~keep).sum(0)
    if counts.min() < at_least:
        sample = int(counts.argmin())
        side = "IN" if member else "OUT"
        raise ValueError(f"{mode} needs >= {at_least} {side} reference models per sample; sample {sample} has "
                         f"{int(counts[sample])} (train more reference models)")


def rmia(target: np.ndarray, reference: np.ndarray, keep: np.ndarray, population: np.ndarray, *,
         gamma: float = 2.0, a: float = 0.33, online: bool = True) -> np.ndarray:
    """RMIA (Zarifzadeh, Liu, Shokri, ICML 2024): scores (N,) in [0, 1].

    ``target`` (N,) and ``reference`` (K, N) are Pr(x | model) signals. Pr(x) is the mean
    of the reference signals over all K models (``online``: IN and OUT) or, offline,
    ``((1 + a) * mean_OUT + (1 - a)) / 2`` over the models that did not train on x.
    score(x) = the fraction of population samples z (indices ``population``, non-members
    of the target) with ``(Pr(x|theta) / Pr(x)) / (Pr(z|theta) / Pr(z)) > gamma``; x is
    never counted against itself, and every score is divided by the population size.
    """
    target, reference, keep = np.asarray(target, float), np.asarray(reference, float), np.asarray(keep, bool)
    _check(target, reference, keep)
    if online:
        _need(keep, True, 1, "online RMIA")
        _need(keep, False, 1, "online RMIA")
        marginal = reference.mean(0)
    else:
        _need(keep, False, 1, "offline RMIA")
        out_mean = np.where(~keep, reference, 0.0).sum(0) / (~keep).sum(0)
        marginal = ((1 + a) * out_mean + (1 - a)) / 2
    ratio = target / np.maximum(marginal, 1e-300)
    population = np.asarray(population)
    if len(population) < 2:
        raise ValueError("RMIA needs a population of at least 2 samples")
    sorted_z = np.sort(ratio[population])
    beaten = np.searchsorted(sorted_z, ratio / gamma, side="left")  # count of z with ratio_z < ratio_x / gamma
    in_population = np.zeros(len(ratio), dtype=bool)
    in_population[population] = True
    self_beaten = in_population & (ratio / gamma > ratio)  # x beats itself only when gamma < 1
    # one denominator for all: dividing population members by |Z| - 1 would shift their
    # (often tied) scores against everyone else's and bias the AUC
    return (beaten - self_beaten) / len(population)


def lira(target: np.ndarray, reference: np.ndarray, keep: np.ndarray, *, online: bool = True,
         fixed_variance: bool = False) -> np.ndarray:
    """LiRA (Carlini et al., S&P 2022): scores (N,) on scaled-logit signals (:func:`scaled_logit`).

    Online: the log-likelihood ratio of ``target`` under per-sample Gaussians fitted to
    the IN and the OUT reference signals. Offline: the one-sided test
    ``log P(Z <= phi)`` with Z ~ N(mu_out, sigma_out) (a member's phi is high).
    ``fixed_variance``: one pooled standard deviation (of the residuals around each
    sample's mean, over all samples) instead of one per sample; needed when there are
    few reference models.
    """
    from scipy.stats import norm

    target, reference, keep = np.asarray(target, float), np.asarray(reference, float), np.asarray(keep, bool)
    _check(target, reference, keep)
    need = 1 if fixed_variance else 2
    out_mu, out_sigma = _gaussian(reference, ~keep, fixed_variance)
    if not online:
        _need(keep, False, need, "offline LiRA")
        return norm.logcdf(target, loc=out_mu, scale=out_sigma)
    _need(keep, True, need, "online LiRA")
    _need(keep, False, need, "online LiRA")
    in_mu, in_sigma = _gaussian(reference, keep, fixed_variance)
    return norm.logpdf(target, loc=in_mu, scale=in_sigma) - norm.logpdf(target, loc=out_mu, scale=out_sigma)


def _gaussian(reference: np.ndarray, chosen: np.ndarray, fixed_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    count = np.maximum(chosen.sum(0), 1)
    mu = np.where(chosen, reference, 0.0).sum(0) / count
    squares = np.where(chosen, (reference - mu) ** 2, 0.0)
    if fixed_variance:
        sigma = np.full_like(mu, math.sqrt(squares.sum() / max(chosen.sum() - chosen.any(0).sum(), 1)))
    else:
        sigma = np.sqrt(squares.sum(0) / np.maximum(chosen.sum(0) - 1, 1))
    return mu, np.maximum(sigma, 1e-6)
