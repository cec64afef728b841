"""MIA-NN (class track): does an unlearned model treat the forgotten class's *training*
samples differently from its *test* samples?

A model retrained without class f has seen neither, so it sends both to f's nearest
classes alike (an automobile becomes a truck) and no classifier can tell them apart
(AUC about 50%). Methods that push the forget-class training samples to arbitrary
classes leave a trace in how much probability those samples get on f's neighbouring
classes; MIA-NN measures it. This is the project's reconstruction of the attack of
arXiv 2506.20893 (the public text does not give every detail): an RBF SVM on the
model's probability vector (sorted, or restricted to f's nearest classes), trained and
scored by cross-validated AUC, forget-class train samples (positive) vs forget-class
test samples (negative), on balanced subsamples.
"""

from __future__ import annotations

import numpy as np


def nearest_class(retrained_probs: list[np.ndarray], forget_class: int) -> int:
    """n(f): the class that models retrained without f assign most of f's samples to.

    ``retrained_probs``: one (N, C) array per retrained model, on forget-class inputs."""
    votes = np.zeros(retrained_probs[0].shape[1])
    for probs in retrained_probs:
        votes += np.bincount(probs.argmax(1), minlength=len(votes))
    votes[forget_class] = -1
    return int(votes.argmax())


def neighbour_classes(retrained_probs: list[np.ndarray], forget_class: int, k: int) -> np.ndarray:
    """The k classes that retrained models give most probability to on f's samples (n(f) first)."""
    mass = sum(probs.mean(0) for probs in retrained_probs)
    mass[forget_class] = -np.inf
    return np.argsort(-mass)[:k]


def features(probs: np.ndarray, kind: str = "sorted", neighbours: np.ndarray | None = None) -> np.ndarray:
    """The attack's input per sample: the probability vector sorted in decreasing order
    (``sorted``) or the probabilities of the ``neighbours`` classes (``neighbours``)."""
    if kind == "sorted":
        return -np.sort(-probs, axis=1)
    if kind == "neighbours":
        if neighbours is None:
            raise ValueError("features(kind='neighbours') needs the neighbour classes")
        return probs[:, neighbours]
    raise ValueError(f"unknown MIA-NN features {kind!r}; known: sorted, neighbours")


def mia_nn_auc(train_features: np.ndarray, test_features: np.ndarray, *, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated AUC (percent) of an RBF SVM telling forget-class train samples
    (label 1) from forget-class test samples (label 0) by their ``features``."""
    return mia_nn_attack(train_features, test_features, seed=seed, folds=folds)["auc"]


def mia_nn_attack(train_features: np.ndarray, test_features: np.ndarray, *, seed: int = 0,
                  folds: int = 5) -> dict[str, float]:
    """:func:`mia_nn_auc` as ``auc`` with its bootstrap 95% interval ``auc_ci95`` over samples."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from unlearn.evaluation.roc import scored_auc

    size = min(len(train_features), len(test_features))
    if size < folds:
        raise ValueError(f"MIA-NN needs at least {folds} forget-class train and test samples, got {size}")
    rng = np.random.default_rng(seed)
    x = np.concatenate([train_features[rng.choice(len(train_features), size, replace=False)],
                        test_features[rng.choice(len(test_features), size, replace=False)]])
    y = np.concatenate([np.ones(size), np.zeros(size)])
    classifier = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0))
    scores = cross_val_predict(classifier, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                               method="decision_function")
    return scored_auc(scores, y, seed=seed)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over samples of 0.5 * ||p(x) - q(x)||_1 between two models' (N, C) output distributions."""
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(1).mean())
