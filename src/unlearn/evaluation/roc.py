"""Scoring an attack: AUC and TPR at low FPR of member (positive) vs non-member (negative)
scores, on balanced subsamples."""

from __future__ import annotations

import numpy as np

FPR_LEVELS = (0.01, 0.001)


def roc_metrics(positive: np.ndarray, negative: np.ndarray, *, seed: int = 0, repeats: int = 3,
                size: int | None = None, interval: bool = True) -> dict[str, float]:
    """``auc`` and ``tpr_at_<fpr>`` (percent; ``tpr_at_1fpr`` at 1 % FPR, ``tpr_at_0_1fpr`` at 0.1 %),
    averaged over ``repeats`` balanced subsamples of ``size`` (default: the smaller group)
    drawn with seeds ``seed, seed + 1, ...``. Ties count half (the Mann-Whitney AUC).
    ``auc_ci95``: the AUC's bootstrap interval over samples (:func:`auc_ci95`, all samples),
    unless ``interval`` is False."""
    from sklearn.metrics import roc_auc_score, roc_curve

    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("roc_metrics needs non-empty positive and negative scores")
    size = min(len(positive), len(negative)) if size is None else size
    results = []
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        pos = rng.choice(positive, size=size, replace=False)
        neg = rng.choice(negative, size=size, replace=False)
        truth = np.concatenate([np.ones(size), np.zeros(size)])
        scores = np.concatenate([pos, neg])
        fpr, tpr, _ = roc_curve(truth, scores)
        row = {"auc": 100.0 * roc_auc_score(truth, scores)}
        for level in FPR_LEVELS:
            row[f"tpr_at_{level * 100:g}fpr".replace(".", "_")] = 100.0 * float(tpr[fpr <= level].max(initial=0.0))
        results.append(row)
    metrics = {key: float(np.mean([r[key] for r in results])) for key in results[0]}
    return {**metrics, "auc_ci95": auc_ci95(positive, negative, seed=seed)} if interval else metrics


def auc_ci95(positive: np.ndarray, negative: np.ndarray, *, seed: int = 0, draws: int = 1000) -> float:
    """Half-width (percent) of the bootstrap 95% percentile interval of the AUC of all
    ``positive`` vs all ``negative`` scores: both groups resampled with replacement,
    ``draws`` times (seeded); ties count half. The interval says how far a model's AUC
    could move with other samples of the same size, e.g. about +-9 points on 40 members."""
    from scipy.stats import rankdata

    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    n, m = len(positive), len(negative)
    rng = np.random.default_rng([seed, 7])
    aucs = np.empty(draws)
    for start in range(0, draws, 100):  # 100 draws at a time bound the memory on large splits
        count = min(100, draws - start)
        both = np.concatenate([positive[rng.integers(0, n, (count, n))], negative[rng.integers(0, m, (count, m))]],
                              axis=1)
        ranks = rankdata(both, axis=1)
        aucs[start:start + count] = (ranks[:, :n].sum(axis=1) - n * (n + 1) / 2) / (n * m)
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(50.0 * (high - low))


def scored_auc(scores: np.ndarray, truth: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """``auc`` (percent) and its bootstrap ``auc_ci95`` of ``scores`` with 0/1 ``truth``
    (e.g. an attack classifier's cross-validated decisions)."""
    from sklearn.metrics import roc_auc_score

    member = np.asarray(truth) == 1
    return {"auc": 100.0 * float(roc_auc_score(truth, scores)),
            "auc_ci95": auc_ci95(scores[member], scores[~member], seed=seed)}


def roc_curve_points(positive: np.ndarray, negative: np.ndarray, points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of all positive vs all negative scores, interpolated on a log-spaced FPR
    grid from 1e-3 to 1 (for plots)."""
    from sklearn.metrics import roc_curve

    truth = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    fpr, tpr, _ = roc_curve(truth, np.concatenate([positive, negative]))
    grid = np.logspace(-3, 0, points)
    return grid, np.interp(grid, fpr, tpr)
