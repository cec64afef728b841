"""The classic "MIA-efficacy" of SalUn (Fan et al., ICLR 2024) and Jia et al. (NeurIPS 2023).

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
    return torch.softmax(logits.double(), dim=1).gather(1, labels.view(-1, 1)).squeeze(1).numpy()


def mia_svc(remain: np.ndarray, test: np.ndarray, forget: np.ndarray, *, seed: int = 0) -> float:
    """MIA-efficacy in percent from the confidences (1-D arrays) of remain, test and forget samples.

    ``remain`` is subsampled (seeded) to the size of ``test`` so that the two classes
    are balanced.
    """
    from sklearn.svm import SVC

    if len(test) == 0 or len(forget) == 0 or len(remain) == 0:
        raise ValueError("mia_svc needs non-empty remain, test and forget confidences")
    rng = np.random.default_rng(seed)
    members = rng.choice(remain, size=min(len(test), len(remain)), replace=False)
    features = np.concatenate([members, test]).reshape(-1, 1)
    targets = np.concatenate([np.ones(len(members)), np.zeros(len(test))])
    classifier = SVC(C=3, gamma="auto", kernel="rbf").fit(features, targets)
    return 100.0 * float((classifier.predict(np.asarray(forget).reshape(-1, 1)) == 0).mean())
