"""Attacks without reference models: the classic "MIA-efficacy" of SalUn (Fan et al.,
ICLR 2024) and Jia et al. (NeurIPS 2023), and a population attack on the loss.

An SVC (RBF kernel, C=3) is trained to tell members (a subset of remain, the size of
the test set) from non-members (the test set) by the model's confidence, i.e. its
softmax probability of the true label; it is then applied to the forget set. The
score is the percentage of forget samples predicted to be *non-members*: higher means
the model treats the forget set more like unseen data (a retrained model's value is
the reference). The attack is weak; the stronger ones (RMIA, LiRA) come with the attack suite.
"""

from __future__ import annotations

import numpy as np
import torch


def true_label_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """softmax(logits)[i, labels[i]] as a float64 array (N,)."""
    from unlearn.evaluation.mia import true_class_probability

    return true_class_probability(logits, labels)


def mia_svc(remain: np.ndarray, test: np.ndarray, forget: np.ndarray, *, seed: int = 0,
            samples: int | None = None) -> float:
    """MIA-efficacy in percent from the confidences (1-D arrays) of remain, test and forget samples.

    ``remain`` is subsampled (seeded) to the size of ``test`` so that the two classes
    are balanced, as in SalUn's code. With ``samples``, each class keeps at most that many
    (seeded): an RBF SVC's fit grows faster than quadratically with its points. On
    CIFAR-10-sized confidences (``benchmarks/evaluate_cifar.py``, 2 cores) SalUn's 10,000 +
    10,000 take 10.8-12.9 s a model; 5,000 + 5,000 take 3.3 s and move MIA-efficacy by
    0.4-0.6 points (7.7-8.0 vs 8.2-8.5), near its own 95% interval over 5,000 forget samples
    (+-0.8); 2,500 + 2,500 take 0.9 s but move it by up to 1.5 points. Sets already that
    small (digits: 449 test samples) are used whole, exactly as before.
    """
    from sklearn.svm import SVC

    if len(test) == 0 or len(forget) == 0 or len(remain) == 0:
        raise ValueError("mia_svc needs non-empty remain, test and forget confidences")
    rng = np.random.default_rng(seed)
    size = min(len(test), len(remain), samples or len(test))
    members = rng.choice(remain, size=size, replace=False)
    if size < len(test):
        test = rng.choice(test, size=size, replace=False)
    features = np.concatenate([members, test]).reshape(-1, 1)
    targets = np.concatenate([np.ones(len(members)), np.zeros(len(test))])
    classifier = SVC(C=3, gamma="auto", kernel="rbf").fit(features, targets)
    return 100.0 * float((classifier.predict(np.asarray(forget).reshape(-1, 1)) == 0).mean())


def proportion_ci95(percent: float, samples: int) -> float:
    """Half-width (points) of the 95% normal interval of a percentage over ``samples``
    samples, e.g. MIA-efficacy over the forget set (the attack's SVC held fixed)."""
    share = percent / 100.0
    return float(100.0 * 1.959964 * np.sqrt(share * (1.0 - share) / samples))


def loss_attack(forget_loss: np.ndarray, test_loss: np.ndarray, *, seed: int = 0, folds: int = 5) -> dict[str, float]:
    """The simple population attack: a logistic regression on the per-sample loss, trained
    to tell forget (label 1) from test (label 0) samples on balanced subsamples, scored by
    ``folds``-fold cross-validated AUC in percent (``auc``; 50 = the model treats them
    alike) with its bootstrap ``auc_ci95``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from unlearn.evaluation.roc import scored_auc

    size = min(len(forget_loss), len(test_loss))
    if size < folds:
        raise ValueError(f"loss_attack needs at least {folds} forget and test samples, got {size}")
    rng = np.random.default_rng(seed)
    features = np.log1p(np.concatenate([rng.choice(forget_loss, size, replace=False),
                                        rng.choice(test_loss, size, replace=False)])).reshape(-1, 1)
    truth = np.concatenate([np.ones(size), np.zeros(size)])
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(LogisticRegression(), features, truth, cv=split, method="predict_proba")[:, 1]
    return scored_auc(scores, truth, seed=seed)
