"""TRW: tilted reweighting for class unlearning (class track).

"On the Necessity of Output Distribution Reweighting for Effective Class Unlearning"
(arXiv 2506.20893). A model retrained without class f sends f's inputs to the classes
most similar to f (an automobile becomes a truck); methods that push them elsewhere are
exposed by the MIA-NN attack. TRW fine-tunes forget-class inputs towards the output a
retrained model would give, estimated from the original model alone:

1. Base: remove f from the original model's softmax p and renormalise:
   ``p~_j = p_j / (1 - p_f)`` for j != f, ``p~_f = 0``.
2. Inter-class similarity ``s_j`` of every class j to f, from the original model's
   classifier head: the cosine similarity of weight rows w_j and w_f (after PCA of the
   rows onto ``pca_dim`` components when set).
3. Tilt (``target: maxent``, the default): the maximum-entropy tilt of p~, i.e. the q
   closest to p~ in KL(q || p~) whose expected similarity meets a constraint,
   ``mean_x E_q(x)[s] = c``. Its solution is the exponential family
   ``q_j ∝ p~_j exp(lambda s_j)``; ``lambda`` (the tilt strength) solves the constraint
   by bisection (the expectation rises monotonically in lambda).
   The paper leaves the constraint's level open; here it is estimated without
   retraining: c is the expected similarity under the original model's renormalised
   output on held-out inputs of class f (``task.holdout``, samples it never trained
   on), where its confusion between f and the other classes is not suppressed by
   memorisation. ``strength`` set to a number fixes
   lambda instead (0: plain renormalisation).
   ``target: softmax`` keeps this project's first reading for comparison: the cosine
   similarities go through a softmax at ``temperature`` and the tilt is a fixed
   ``beta``. With beta 10 and temperature 0.1 that target is nearly one-hot and
   overshoots: on digits it sent 93% of class 1 to class 8 where retrained models send 51%.

The model is then fine-tuned on forget-class inputs with the soft-target cross-entropy
to q (KL(q || p_theta) up to a constant) and on remain data with the usual cross-entropy.
"""

from __future__ import annotations

import torch
from torch import nn

from unlearn.unlearning.base import register


def final_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` (its classifier head)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("TRW needs a model whose classifier is an nn.Linear layer")
    return linears[-1]


def cosine_similarity(weight: torch.Tensor, forget_class: int, *, pca_dim: int | None = None) -> torch.Tensor:
    """(C,) cosine similarity between class f's weight row and every row (f's own entry 1),
    after PCA of the rows onto ``pca_dim`` components (``None``: no projection)."""
    rows = weight.detach().double()
    num_classes = rows.shape[0]
    if not 0 <= forget_class < num_classes:
        raise ValueError(f"forget class {forget_class} is not one of the model's {num_classes} classes")
    if pca_dim is not None:
        centred = rows - rows.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        rows = centred @ v[: min(pca_dim, v.shape[0])].T
    return nn.functional.cosine_similarity(rows, rows[forget_class].expand_as(rows), dim=1)


def class_similarity(weight: torch.Tensor, forget_class: int, *, pca_dim: int | None = None,
                     temperature: float = 0.1) -> torch.Tensor:
    """s (C,): a softmax over j != f (at ``temperature``) of :func:`cosine_similarity`;
    ``s[f] = 0`` (the similarity of ``target: softmax``)."""
    cosine = cosine_similarity(weight, forget_class, pca_dim=pca_dim)
    cosine[forget_class] = -torch.inf
    return torch.softmax(cosine / temperature, dim=0)


def renormalised(probs: torch.Tensor, forget_class: int) -> torch.Tensor:
    """p~ (N, C) in float64: ``probs`` without the forget class, rows renormalised. Where the
    model gives all its probability to f (``p_f = 1`` in floating point) p~ is undefined;
    such rows are taken uniform over the other classes."""
    base = probs.double().clone()
    base[:, forget_class] = 0.0
    empty = base.sum(1) <= 0
    base[empty] = 1.0
    base[empty, forget_class] = 0.0
    return base / base.sum(1, keepdim=True)


def tilt(base: torch.Tensor, similarity: torch.Tensor, strength: float) -> torch.Tensor:
    """``q ∝ base * exp(strength * similarity)`` row by row (float64; zeros of ``base`` stay 0)."""
    weight = strength * similarity.double()
    tilted = base * torch.exp(weight - weight.max()).unsqueeze(0)  # shifted: no overflow for large strengths
    return tilted / tilted.sum(1, keepdim=True)


def expected_similarity(q: torch.Tensor, similarity: torch.Tensor) -> float:
    """``mean_x E_q(x)[s]``: the constrained quantity of the maximum-entropy tilt."""
    return float((q * similarity.double()).sum(1).mean())


def solve_strength(base: torch.Tensor, similarity: torch.Tensor, level: float, *, bound: float = 100.0,
                   tol: float = 1e-9) -> float:
    """The lambda in [-bound, bound] with ``expected_similarity(tilt(base, s, lambda)) = level``,
    by bisection (the expectation's derivative in lambda is a variance, >= 0). A level
    outside what [-bound, bound] reaches gives the nearer end."""
    lo, hi = -bound, bound
    if expected_similarity(tilt(base, similarity, hi), similarity) <= level:
        return hi
    if expected_similarity(tilt(base, similarity, lo), similarity) >= level:
        return lo
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if expected_similarity(tilt(base, similarity, mid), similarity) < level:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def maxent_targets(probs: torch.Tensor, forget_class: int, similarity: torch.Tensor,
                   level: float | None = None, strength: float | None = None,
                   bound: float = 100.0) -> tuple[torch.Tensor, float]:
    """(q, lambda): the maximum-entropy tilt of the renormalised ``probs`` (N, C) by
    ``similarity`` (C,), with lambda solving ``mean_x E_q(x)[s] = level`` or, when
    ``strength`` is given, fixed to it. ``q[:, f] = 0`` and rows sum to 1."""
    if (level is None) == (strength is None):
        raise ValueError("give either the constraint's level or a fixed strength")
    s = similarity.double().clone()
    s[forget_class] = 0.0  # q_f = 0 whatever s_f is
    base = renormalised(probs, forget_class)
    if strength is None:
        strength = solve_strength(base, s, level, bound=bound)
    return tilt(base, s, strength).float(), strength


def holdout_level(holdout_probs: torch.Tensor, forget_class: int, similarity: torch.Tensor) -> float:
    """The constraint's level: the expected similarity under the renormalised output on
    held-out inputs of the forgotten class."""
    s = similarity.double().clone()
    s[forget_class] = 0.0
    return expected_similarity(renormalised(holdout_probs, forget_class), s)


def trw_targets(probs: torch.Tensor, forget_class: int, similarity: torch.Tensor, beta: float = 10.0) -> torch.Tensor:
    """``target: softmax``: q (N, C) from ``probs`` (N, C), f removed, the rest renormalised
    and tilted by ``exp(beta * similarity)`` with the fixed ``beta`` and the softmax
    similarity of :func:`class_similarity`; rows sum to 1 and ``q[:, f] = 0``."""
    if beta < 0:
        raise ValueError(f"TRW's beta must be >= 0, got {beta}")
    return tilt(renormalised(probs, forget_class), similarity, beta).float()


def forget_class_of(task) -> int:
    """The single class that ``task.forget`` consists of (TRW forgets one class at a time)."""
    classes = torch.unique(task.labels[task.forget]).tolist()
    if len(classes) != 1:
        raise ValueError(f"TRW forgets one whole class; the forget set holds classes {classes}")
    return int(classes[0])


def _softmax_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from unlearn.device import exact_forward, model_device, to_batch
    from unlearn.training import train_mode

    device = model_device(model)
    with torch.no_grad(), train_mode(model, False):
        return torch.cat([torch.softmax(exact_forward(model, to_batch(chunk, device)), dim=1) for chunk in x.split(512)])


def targets_for(model: nn.Module, task, cfg) -> tuple[torch.Tensor, float]:
    """(q, tilt strength) of ``task``'s forget inputs under ``model`` (the original) and ``cfg``."""
    from unlearn.training import to_float

    forget_class = forget_class_of(task)
    xf, _ = task.split("forget")
    probs = _softmax_outputs(model, xf)
    weight = final_linear(model).weight
    if cfg.target == "softmax":
        similarity = class_similarity(weight, forget_class, pca_dim=cfg.pca_dim, temperature=cfg.temperature)
        return trw_targets(probs, forget_class, similarity, cfg.beta), cfg.beta
    similarity = cosine_similarity(weight, forget_class, pca_dim=cfg.pca_dim)
    if cfg.strength is not None:
        return maxent_targets(probs, forget_class, similarity, strength=cfg.strength)
    held_out = None if task.holdout is None else task.holdout[task.labels[task.holdout] == forget_class]
    if held_out is None or len(held_out) == 0:
        raise ValueError(f"TRW's constraint needs held-out inputs of class {forget_class} (task.holdout); "
                         f"set unlearn_class.trw.strength to a number to tilt without them")
    level = holdout_level(_softmax_outputs(model, to_float(task.images[held_out])), forget_class, similarity)
    return maxent_targets(probs, forget_class, similarity, level=level, bound=cfg.max_strength)


@register("trw_maxent", tracks=("class",))
@register("trw", tracks=("class",))
def trw_unlearn(model: nn.Module, task, cfg, generator: torch.Generator) -> None:
    """Fine-tune ``model`` in place: forget-class inputs towards their TRW targets (soft
    cross-entropy, i.e. KL(q || p_theta) up to a constant) and, when ``cfg.use_remain``,
    remain samples towards their labels (cross-entropy), in shuffled batches with the SGD
    recipe ``cfg``. The targets come from the model as it is before fine-tuning (the
    original model); see the module docstring and :class:`unlearn.config.TrwConfig`.
    Registered twice: ``trw`` (params.yaml configures it as the paper does: softmax
    similarity) and ``trw_maxent`` (this project's maximum-entropy variant), so that both
    run side by side with their own sections."""
    from unlearn.device import move
    from unlearn.training import train_

    xf, yf = task.split("forget")
    soft, _ = targets_for(model, task, cfg)  # on the model's device, as train_ gathers it
    x, y = xf, yf
    if cfg.use_remain:
        xr, yr = task.split("remain")
        x, y = torch.cat([xf, xr]), torch.cat([yf, yr])
        soft = torch.cat([soft, move(nn.functional.one_hot(yr, task.num_classes).float(), soft.device)])
    train_(model, x, y, cfg, generator=generator, soft_labels=soft)
