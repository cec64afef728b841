import math

import numpy as np
import pytest
import torch

from unlearn.evaluation.mia import lira, rmia, scaled_logit, true_class_probability
from unlearn.evaluation.roc import roc_metrics


def test_scaled_logit_is_the_log_odds_of_the_true_class():
    logits = torch.randn(2, 5, 4)
    labels = torch.tensor([0, 1, 2, 3, 0])
    p = true_class_probability(logits, labels)
    assert p.shape == (2, 5)
    np.testing.assert_allclose(scaled_logit(logits, labels), np.log(p / (1 - p)), rtol=1e-9)


def test_taylor_soft_margin_signal_by_hand():
    logits, label = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    t = lambda v: 1 + v + v ** 2 / 2 + v ** 3 / 6  # noqa: E731
    expected = t(1.0 - 0.6) / (t(1.0 - 0.6) + t(0.0) + t(-0.5))
    got = true_class_probability(logits, label, kind="taylor_soft_margin", temperature=2.0, margin=0.6, order=4)
    assert got[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown signal kind"):
        true_class_probability(logits, label, kind="cosine")


def _world(n=400, k=8, seed=0, leak=1.0):
    """Reference signals where training on a sample raises its signal by ``leak``; the
    target trained on the first half."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(size=n)
    keep = np.zeros((k, n), dtype=bool)
    for column in range(n):
        keep[rng.permutation(k)[: k // 2], column] = True
    reference = difficulty + leak * keep + 0.3 * rng.normal(size=(k, n))
    member = np.arange(n) < n // 2
    target = difficulty + leak * member + 0.3 * rng.normal(size=n)
    return target, reference, keep, member


def _auc(scores, member):
    return roc_metrics(scores[member], scores[~member], repeats=1)["auc"]


@pytest.mark.parametrize("online", [True, False])
def test_rmia_separates_members_when_training_leaks_and_not_otherwise(online):
    target, reference, keep, member = _world()
    probs = 1 / (1 + np.exp(-target)), 1 / (1 + np.exp(-reference))
    population = np.flatnonzero(~member)
    scores = rmia(probs[0], probs[1], keep, population, gamma=1.0, online=online)
    assert scores.min() >= 0 and scores.max() <= 1
    assert _auc(scores, member) > 85
    target, reference, keep, member = _world(leak=0.0, seed=1)
    probs = 1 / (1 + np.exp(-target)), 1 / (1 + np.exp(-reference))
    assert abs(_auc(rmia(probs[0], probs[1], keep, np.flatnonzero(~member), online=online), member) - 50) < 8


def test_rmia_score_is_the_fraction_of_population_beaten_by_gamma():
    target = np.array([0.8, 0.2, 0.4, 0.6])
    reference = np.full((2, 4), 0.5)
    keep = np.array([[True, False, True, False], [False, True, False, True]])
    scores = rmia(target, reference, keep, np.array([1, 2, 3]), gamma=1.5)
    # ratios 1.6, 0.4, 0.8, 1.2; x=0 beats z with ratio < 1.6/1.5: 0.4, 0.8 -> 2/3
    assert scores[0] == pytest.approx(2 / 3)
    assert scores[3] == pytest.approx(1 / 3)  # ratio 1.2 beats 0.4 only (not 0.8, not itself)


def test_lira_online_and_offline_find_members():
    target, reference, keep, member = _world()
    for online in (True, False):
        for fixed in (True, False):
            assert _auc(lira(target, reference, keep, online=online, fixed_variance=fixed), member) > 85


def test_bad_inputs_are_refused_with_a_reason():
    target, reference, keep, _ = _world(k=2)
    keep[:, 0] = True  # sample 0 is IN for both models: no OUT model
    with pytest.raises(ValueError, match="needs >= 1 OUT reference models per sample; sample 0 has 0"):
        rmia(target, reference, keep, np.arange(10))
    with pytest.raises(ValueError, match="online LiRA needs >= 2 IN"):
        lira(target, reference, _world(k=2)[2])
    bad = target.copy()
    bad[3] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        lira(bad, reference, _world(k=4)[2][:2])
    with pytest.raises(ValueError, match="shapes do not match"):
        rmia(target[:-1], reference, keep, np.arange(10))


def test_roc_metrics_on_perfect_and_random_scores():
    perfect = roc_metrics(np.array([2.0, 3.0, 4.0]), np.array([0.0, 1.0, 1.5]))
    assert perfect == {"auc": 100.0, "tpr_at_1fpr": 100.0, "tpr_at_0_1fpr": 100.0, "auc_ci95": 0.0}
    rng = np.random.default_rng(0)
    random = roc_metrics(rng.normal(size=5000), rng.normal(size=3000), seed=1)
    assert abs(random["auc"] - 50) < 3 and random["tpr_at_1fpr"] < 3


def test_the_auc_interval_covers_the_truth_and_shrinks_with_the_samples():
    from unlearn.evaluation.roc import auc_ci95

    rng = np.random.default_rng(0)
    small, large = auc_ci95(rng.normal(size=40), rng.normal(size=40)), auc_ci95(rng.normal(size=640),
                                                                                rng.normal(size=640))
    assert 8 < small < 16 and large == pytest.approx(small / 4, rel=0.3)  # 1 / sqrt(16)
    covered = 0
    for draw in range(100):  # AUC of N(0.5, 1) vs N(0, 1): Phi(0.5 / sqrt(2)) = 63.8%
        positive, negative = rng.normal(0.5, 1, 100), rng.normal(0, 1, 100)
        found = roc_metrics(positive, negative, seed=draw, repeats=1)
        covered += abs(found["auc"] - 63.82) <= found["auc_ci95"]
    assert covered >= 88



def _slow_rmia(target, reference, keep, population, gamma, a, online):
    """RMIA written straight from its definition, one pair (x, z) at a time."""
    k, n = reference.shape
    marginal = []
    for x in range(n):
        if online:
            marginal.append(sum(reference[m, x] for m in range(k)) / k)
        else:
            outs = [reference[m, x] for m in range(k) if not keep[m, x]]
            marginal.append(((1 + a) * sum(outs) / len(outs) + (1 - a)) / 2)
    scores = []
    for x in range(n):
        beaten = sum(1 for z in population if z != x
                     and (target[x] / marginal[x]) / (target[z] / marginal[z]) > gamma)
        scores.append(beaten / len(population))
    return np.array(scores)


def _slow_lira(target, reference, keep, online):
    """LiRA from its definition: per-sample Gaussians, sample standard deviations."""
    from scipy.stats import norm

    scores = []
    for x in range(len(target)):
        ins = [reference[m, x] for m in range(len(reference)) if keep[m, x]]
        outs = [reference[m, x] for m in range(len(reference)) if not keep[m, x]]
        out_pdf = norm(np.mean(outs), np.std(outs, ddof=1))
        if online:
            scores.append(norm(np.mean(ins), np.std(ins, ddof=1)).logpdf(target[x]) - out_pdf.logpdf(target[x]))
        else:
            scores.append(out_pdf.logcdf(target[x]))
    return np.array(scores)


@pytest.mark.parametrize("online", [True, False])
def test_fast_attacks_match_a_direct_implementation(online):
    target, reference, keep, _ = _world(n=60, k=6, seed=3)
    probs = 1 / (1 + np.exp(-target)), 1 / (1 + np.exp(-reference))
    population = np.arange(10, 50)
    for gamma in (0.5, 1.0, 2.0):
        np.testing.assert_allclose(rmia(probs[0], probs[1], keep, population, gamma=gamma, a=0.3, online=online),
                                   _slow_rmia(probs[0], probs[1], keep, population, gamma, 0.3, online))
    np.testing.assert_allclose(lira(target, reference, keep, online=online), _slow_lira(target, reference, keep, online))
