import numpy as np
import pytest
import torch

from unlearn.evaluation.ulira import candidates, shadow_keep, ulira_metrics, ulira_scores

M, S = 400, 8


def logits_of(phi: np.ndarray) -> torch.Tensor:
    """Two-class logits whose scaled logit (label 0) is ``phi``."""
    phi = torch.as_tensor(phi, dtype=torch.float64)
    return torch.stack([phi, torch.zeros_like(phi)], dim=-1)


def signals(unlearned_shift: float, target_shift: float, seed: int = 0):
    """Per-candidate difficulty d ~ N(0, 2); shadows that unlearned a candidate see
    d + ``unlearned_shift``, shadows that never saw it d; the target sees d + ``target_shift``
    on its positives (the first half) and d on its negatives, each with noise N(0, 0.5)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 2, M)
    keep = shadow_keep(S, M, seed)
    shadows = difficulty + unlearned_shift * keep + rng.normal(0, 0.5, (S, M))
    positive = np.arange(M) < M // 2
    target = difficulty + target_shift * positive + rng.normal(0, 0.5, M)
    return logits_of(target), logits_of(shadows), keep, positive


def auc(unlearned_shift: float, target_shift: float, fixed_variance: bool = True) -> float:
    target, shadows, keep, positive = signals(unlearned_shift, target_shift)
    scores = ulira_scores(target, shadows, keep, torch.zeros(M, dtype=torch.int64), fixed_variance=fixed_variance)
    return ulira_metrics(scores, positive, repeats=5)["ulira_auc"]


def test_a_retrain_like_target_scores_about_50():
    # retraining leaves unlearned candidates exactly like never-seen ones, in the shadows and in the target
    assert auc(0.0, 0.0) == pytest.approx(50, abs=6)
    assert auc(0.0, 0.0, fixed_variance=False) == pytest.approx(50, abs=6)


def test_a_model_that_never_unlearned_is_exposed():
    # the method leaves a trace (unlearned candidates keep a higher signal), and the target carries it
    assert auc(3.0, 3.0) > 90
    # a target that unlearned perfectly, scored against the same shadows, is not
    assert auc(3.0, 0.0) == pytest.approx(50, abs=6)


def test_candidates_pair_the_forget_set_with_as_many_never_seen_samples():
    indices, positive = candidates(np.array([5, 9, 11]), np.arange(20, 40), seed=0)
    assert list(indices[:3]) == [5, 9, 11] and positive.tolist() == [True] * 3 + [False] * 3
    assert set(indices[3:]) <= set(range(20, 40))
    indices, positive = candidates(np.arange(10), np.array([50, 51]), seed=0)
    assert len(indices) == 12 and positive.sum() == 10
    with pytest.raises(ValueError, match="non-empty forget set"):
        candidates(np.array([], dtype=int), np.arange(3), seed=0)


def test_every_candidate_is_unlearned_by_half_the_shadows():
    keep = shadow_keep(6, 50, seed=1)
    assert keep.shape == (6, 50) and (keep.sum(0) == 3).all()
    with pytest.raises(ValueError, match=">= 4 shadow models"):
        shadow_keep(3, 50, seed=1)
    assert shadow_keep(0, 50, seed=1).shape == (0, 50)  # ulira.shadows: 0, U-LiRA off
