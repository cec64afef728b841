"""Every model faces the same attacks: RMIA and LiRA with the cached reference models,
scored forget vs test and remain vs test."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from unlearn.config import MiaConfig
from unlearn.evaluation.mia import lira, rmia, scaled_logit, true_class_probability
from unlearn.evaluation.roc import roc_metrics

_KEEP_STREAM = 4


def keep_matrix(models: int, samples: int, seed: int | Sequence[int]) -> np.ndarray:
    """(models, samples) bool: which samples each reference model trains on. For each
    sample, a seeded random floor(models / 2) of the models do (``seed``: an int, or a
    sequence of ints such as a study cell's (model seed, forget-set seed, ...))."""
    entropy = [seed] if isinstance(seed, int) else list(seed)
    order = np.random.default_rng([*entropy, _KEEP_STREAM]).random((models, samples)).argsort(axis=0)
    return order < models // 2


def population(test: np.ndarray, size: int, seed: int) -> np.ndarray:
    """RMIA's z samples: a seeded subset of the test split (non-members of every model here)."""
    rng = np.random.default_rng([seed, 6])
    return np.sort(rng.choice(test, size=min(size, len(test)), replace=False))


def attack_scores(target_logits: torch.Tensor, reference_logits: torch.Tensor, keep: np.ndarray,
                  labels: torch.Tensor, test: np.ndarray, cfg: MiaConfig, seed: int,
                  attacks: Sequence[str] = ("rmia", "lira")) -> dict[str, np.ndarray]:
    """Per-sample membership scores (N,) of each of ``attacks`` (``rmia``, ``lira``) for a model's
    logits (N, C), given the reference models' logits (K, N, C) and their keep matrix (K, N)."""
    signal = {"kind": cfg.signal, "temperature": cfg.temperature, "margin": cfg.margin, "order": cfg.order}
    scores = {}
    if "rmia" in attacks:
        scores["rmia"] = rmia(true_class_probability(target_logits, labels, **signal),
                              true_class_probability(reference_logits, labels, **signal), keep,
                              population(test, cfg.population, seed), gamma=cfg.gamma, a=cfg.a, online=cfg.online)
    if "lira" in attacks:
        scores["lira"] = lira(scaled_logit(target_logits, labels), scaled_logit(reference_logits, labels), keep,
                              online=cfg.online, fixed_variance=cfg.fixed_variance)
    return scores


def attack_metrics(scores: Mapping[str, np.ndarray], splits: Mapping[str, np.ndarray], cfg: MiaConfig,
                   seed: int) -> dict[str, float]:
    """For each attack: ``mia_<attack>_auc`` and ``mia_<attack>_tpr_at_1fpr`` / ``_tpr_at_0_1fpr``
    (forget vs test) and ``mia_<attack>_remain_auc`` (remain vs test), in percent."""
    metrics = {}
    for attack, score in scores.items():
        forget = roc_metrics(score[splits["forget"]], score[splits["test"]], seed=seed, repeats=cfg.repeats)
        remain = roc_metrics(score[splits["remain"]], score[splits["test"]], seed=seed, repeats=cfg.repeats,
                             interval=False)  # only its AUC is kept
        metrics.update({f"mia_{attack}_{key}": value for key, value in forget.items()})
        metrics[f"mia_{attack}_remain_auc"] = remain["auc"]
    return metrics
