"""What the class track measures of one model, from its outputs on every sample and the
retrained models' outputs on the forgotten class.

The retrained models (trained without class f, several seeds) are the reference twice:
their mean output distribution on f's inputs is what an unlearned model should match
(``tv_to_retrain``), and the classes they send f's inputs to are MIA-NN's neighbours.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from unlearn.config import MiaNnConfig
from unlearn.evaluation.mia_nn import features, mia_nn_attack, neighbour_classes, total_variation


def forget_inputs(splits: Mapping[str, np.ndarray]) -> np.ndarray:
    """Every input of the forgotten class: its train samples, then its test samples."""
    return np.concatenate([splits["forget"], splits["forget_test"]])


def class_metrics(logits: torch.Tensor, labels: torch.Tensor, splits: Mapping[str, np.ndarray],
                  retrained_probs: list[np.ndarray], forget_class: int, cfg: MiaNnConfig,
                  seed: int) -> dict[str, float]:
    """One model's class-track metrics (percent unless noted) from its ``logits`` (N, C):

    - ``forget_acc`` / ``forget_test_acc``: accuracy on the forgotten class's train / test
      samples (about 0 after unlearning); ``retain_acc``, ``test_acc``: on the remaining
      classes' train / test samples;
    - ``mia_nn``: MIA-NN's AUC, forget-class train vs test samples (50: no trace), and its
      bootstrap 95% half-width over samples ``mia_nn_ci95``;
    - ``tv_to_retrain`` (a distance in [0, 1]): mean total variation between this model's
      and the retrained models' mean output distribution on the forgotten class's inputs;
    - ``to_nearest``: share of those inputs predicted as the nearest class n(f).

    ``retrained_probs``: each retrained model's softmax (M, C) on ``forget_inputs(splits)``.
    """
    probs = torch.softmax(logits.double(), dim=1).numpy()
    predicted, truth = logits.argmax(1).numpy(), labels.numpy()
    metrics = {}
    for split, key in (("forget", "forget"), ("forget_test", "forget_test"), ("remain", "retain"), ("test", "test")):
        metrics[f"{key}_acc"] = 100.0 * float((predicted[splits[split]] == truth[splits[split]]).mean())
    neighbours = neighbour_classes(retrained_probs, forget_class, cfg.neighbours)
    kind = {"kind": cfg.features, "neighbours": neighbours}
    found = mia_nn_attack(features(probs[splits["forget"]], **kind), features(probs[splits["forget_test"]], **kind),
                          seed=seed, folds=cfg.folds)
    metrics["mia_nn"], metrics["mia_nn_ci95"] = found["auc"], found["auc_ci95"]
    inputs = forget_inputs(splits)
    metrics["tv_to_retrain"] = total_variation(probs[inputs], np.mean(retrained_probs, axis=0))
    metrics["to_nearest"] = 100.0 * float((predicted[inputs] == neighbours[0]).mean())
    return metrics


def destinations(logits: torch.Tensor, inputs: np.ndarray) -> np.ndarray:
    """Percent of ``inputs`` predicted as each class (C,): where the forgotten class goes."""
    predicted = logits[torch.as_tensor(inputs)].argmax(1)
    return 100.0 * np.bincount(predicted.numpy(), minlength=logits.shape[1]) / len(inputs)
