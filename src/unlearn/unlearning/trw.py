"""TRW: tilted reweighting for class unlearning (class track).

A reconstruction of "On the Necessity of Output Distribution Reweighting for Effective
Class Unlearning" (arXiv 2506.20893; ICML 2026 as "Unlearning Isn't Forgetting"): the
public text gives the idea but not every formula, so what follows is this project's
reading of it, with every constant a parameter.

A model retrained without class f sends f's inputs to the classes most similar to f
(an automobile becomes a truck); methods that push them to arbitrary classes are
exposed by the MIA-NN attack. TRW fine-tunes towards the distribution a retrained model
would give, estimated from the original model alone:

1. Base: remove f from the original model's softmax p and renormalise:
   ``p~_j = p_j / (1 - p_f)`` for j != f, ``p~_f = 0``.
2. Inter-class similarity from the original model's final linear layer: its weight rows
   w_k are projected by PCA onto ``pca_dim`` components, the cosine similarity of w_f to
   each w_j (j != f) goes through a softmax at ``temperature``: ``s_j``.
3. Tilt (the KL projection of p~ under a constraint on the expected similarity):
   ``q_j = p~_j exp(beta s_j) / sum_k p~_k exp(beta s_k)``, ``q_f = 0``. ``beta = 0`` is
   plain renormalisation (the simpler "reweighting" variant).

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


def class_similarity(weight: torch.Tensor, forget_class: int, *, pca_dim: int | None = None,
                     temperature: float = 0.1) -> torch.Tensor:
    """s (C,): a softmax over j != f (at ``temperature``) of the cosine similarity between
    class f's weight row and every other row, after PCA of the rows onto ``pca_dim``
    components (``None``: no projection); ``s[f] = 0``."""
    rows = weight.detach().double()
    num_classes = rows.shape[0]
    if not 0 <= forget_class < num_classes:
        raise ValueError(f"forget class {forget_class} is not one of the model's {num_classes} classes")
    if pca_dim is not None:
        centred = rows - rows.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        rows = centred @ v[: min(pca_dim, v.shape[0])].T
    cosine = nn.functional.cosine_similarity(rows, rows[forget_class].expand_as(rows), dim=1)
    cosine[forget_class] = -torch.inf
    return torch.softmax(cosine / temperature, dim=0)


def trw_targets(probs: torch.Tensor, forget_class: int, similarity: torch.Tensor, beta: float = 10.0) -> torch.Tensor:
    """q (N, C) from the original model's softmax ``probs`` (N, C): f removed, the rest
    renormalised and tilted by ``exp(beta * similarity)``; rows sum to 1 and ``q[:, f] = 0``.

    Where the model gives all its probability to f (``p_f = 1`` in floating point), p~ is
    undefined; such rows take p~ uniform over the other classes, so q is the tilt alone."""
    if beta < 0:
        raise ValueError(f"TRW's beta must be >= 0, got {beta}")
    base = probs.double().clone()
    base[:, forget_class] = 0.0
    empty = base.sum(1) <= 0
    base[empty] = 1.0
    base[empty, forget_class] = 0.0
    weight = beta * similarity.double()
    tilted = base * torch.exp(weight - weight.max()).unsqueeze(0)  # shifted: no overflow for large beta
    return (tilted / tilted.sum(1, keepdim=True)).float()


def forget_class_of(task) -> int:
    """The single class that ``task.forget`` consists of (TRW forgets one class at a time)."""
    classes = torch.unique(task.labels[task.forget]).tolist()
    if len(classes) != 1:
        raise ValueError(f"TRW forgets one whole class; the forget set holds classes {classes}")
    return int(classes[0])


@register("trw", tracks=("class",))
def trw_unlearn(model: nn.Module, task, cfg, generator: torch.Generator) -> None:
    """Fine-tune ``model`` in place: forget-class inputs towards their TRW targets (soft
    cross-entropy, i.e. KL(q || p_theta) up to a constant) and, when ``cfg.use_remain``,
    remain samples towards their labels (cross-entropy), in shuffled batches with the SGD
    recipe ``cfg``. The targets come from the model as it is before fine-tuning (the
    original model), with ``cfg.beta``, ``cfg.pca_dim`` and ``cfg.temperature``."""
    from unlearn.device import forward, model_device, move, to_batch
    from unlearn.training import train_, train_mode

    forget_class = forget_class_of(task)
    xf, yf = task.split("forget")
    device = model_device(model)
    with torch.no_grad(), train_mode(model, False):
        probs = torch.cat([torch.softmax(forward(model, to_batch(chunk, device)), dim=1) for chunk in xf.split(512)])
    similarity = class_similarity(final_linear(model).weight, forget_class, pca_dim=cfg.pca_dim,
                                  temperature=cfg.temperature)
    x, y, soft = xf, yf, trw_targets(probs, forget_class, similarity, cfg.beta)
    if cfg.use_remain:
        xr, yr = task.split("remain")
        x, y = torch.cat([xf, xr]), torch.cat([yf, yr])
        soft = torch.cat([soft, move(nn.functional.one_hot(yr, task.num_classes).float(), soft.device)])
    train_(model, x, y, cfg, generator=generator, soft_labels=soft)
