"""U-LiRA (Hayes et al. 2024, "Inexact unlearning needs more careful evaluations to avoid
a false sense of privacy"): a per-example likelihood-ratio test that tells samples a
model has *unlearned* from samples it has *never seen*.

The candidates are the target's forget set (positives: trained on, then unlearned) and an
equal number of samples the target never trained on (negatives). S shadow models each
train on the target's remain set plus a random half of the candidates (every candidate
in exactly floor(S / 2) of them), and the method under test unlearns that half from each.
For every candidate, Gaussians are fitted to its scaled logit (LiRA's signal) over the
shadows that unlearned it and over the shadows that never saw it; the target's score is
the log-likelihood ratio of the two. An unlearning method that leaves no trace gives an
AUC of 50, as retraining does.

Choices left open by the paper, made here: the shadows train on the target's own remain
set (so only the candidates vary between them, as in the paper's per-example setup);
the negatives of the random track are a seeded subset of the test split, those of the
class track the forgotten class's test samples; one pooled variance by default
(``fixed_variance``), since the default runs use few shadows.
"""

from __future__ import annotations

import numpy as np
import torch

from unlearn.evaluation.mia import lira, scaled_logit
from unlearn.evaluation.roc import roc_metrics

_NEGATIVE_STREAM = 7
_KEEP_STREAM = 8


def candidates(forget: np.ndarray, never_seen: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, positive): the forget set followed by a seeded subset of ``never_seen`` as
    large as the forget set (all of it when it is smaller); ``positive`` marks the forget part."""
    forget, never_seen = np.asarray(forget), np.asarray(never_seen)
    if len(forget) == 0 or len(never_seen) == 0:
        raise ValueError("U-LiRA needs a non-empty forget set and samples the target never trained on")
    rng = np.random.default_rng([seed, _NEGATIVE_STREAM])
    negatives = np.sort(rng.choice(never_seen, size=min(len(forget), len(never_seen)), replace=False))
    indices = np.concatenate([forget, negatives])
    return indices, np.arange(len(indices)) < len(forget)


def shadow_keep(shadows: int, count: int, seed: int | tuple) -> np.ndarray:
    """(shadows, count) bool: which candidates each shadow trains on (and then unlearns);
    every candidate in exactly floor(shadows / 2) of them (none for 0 shadows: U-LiRA off)."""
    from unlearn.evaluation.suite import keep_matrix

    if shadows == 0:
        return np.zeros((0, count), dtype=bool)
    if shadows < 4:
        raise ValueError(f"U-LiRA needs >= 4 shadow models (2 that unlearned and 2 that never saw each "
                         f"candidate), got {shadows}")
    entropy = (seed,) if isinstance(seed, int) else tuple(seed)
    return keep_matrix(shadows, count, (*entropy, _KEEP_STREAM))


def ulira_scores(target_logits: torch.Tensor, shadow_logits: torch.Tensor, keep: np.ndarray, labels: torch.Tensor,
                 *, fixed_variance: bool = True) -> np.ndarray:
    """Scores (M,) of the M candidates: log N(phi; unlearned) - log N(phi; never seen), phi the
    target's scaled logit (``target_logits`` (M, C)); the Gaussians come from the
    ``shadow_logits`` (S, M, C) of the shadows that unlearned (``keep``) and never saw each
    candidate. High: looks unlearned (trained on)."""
    target = scaled_logit(target_logits, labels)
    shadows = scaled_logit(shadow_logits, labels)
    return lira(target, shadows, keep, online=True, fixed_variance=fixed_variance)


def ulira_metrics(scores: np.ndarray, positive: np.ndarray, *, seed: int = 0, repeats: int = 3) -> dict[str, float]:
    """``ulira_auc``, its bootstrap ``ulira_auc_ci95`` and ``ulira_tpr_at_1fpr`` (percent) of
    unlearned vs never-seen candidates."""
    found = roc_metrics(scores[positive], scores[~positive], seed=seed, repeats=repeats)
    return {"ulira_auc": found["auc"], "ulira_auc_ci95": found["auc_ci95"], "ulira_tpr_at_1fpr": found["tpr_at_1fpr"]}
