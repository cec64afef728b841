"""Memorisation scores of the train samples, for ``data.forget.mode: memorized`` (stage
``prepare``; :mod:`unlearn.evaluation.memorization`).

Models of their own, trained before the forget set exists: the forget set they lead to never
depends on the reference models that later judge its unlearning.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from unlearn.config import Params

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)
KEEP_STREAM = 8  # the models' train halves: a seed stream of their own (the references draw [seed])


def train_scores(params: Params, images: torch.Tensor, labels: torch.Tensor, classes: int, train: np.ndarray,
                 stats: dict[str, list[float]], device: torch.device) -> np.ndarray:
    """Each train sample's score (in ``train``'s order) from ``memorization.references`` models of
    the ``train`` recipe (``memorization.epochs``; normalising by ``stats``, the ``mean`` and
    ``std`` of train), each on a seeded random half of train (every sample in half of them):
    its mean true-class confidence over the models that trained on it minus over those that did not."""
    import numpy as np
    import torch

    from unlearn.device import precision
    from unlearn.evaluation import predict
    from unlearn.evaluation.memorization import memorization_scores, true_class_confidence
    from unlearn.evaluation.suite import keep_matrix
    from unlearn.recipe import fit_model

    count = params.memorization.references
    keep = keep_matrix(count, len(train), [params.seed, KEEP_STREAM])
    recipe = params.model_copy(update={"train": params.train.model_copy(
        update={"epochs": params.memorization.epochs or params.train.epochs})})
    rows = torch.as_tensor(train)
    confidence = np.empty((count, len(train)))
    with precision(params.execution.precision):
        for k in range(count):
            start = time.perf_counter()
            model, _ = fit_model(images, labels, train[keep[k]], recipe, model_seed(params.seed, k), stats, classes,
                                 None, device)
            confidence[k] = true_class_confidence(predict(model, images[rows]), labels[rows])
            log.info("memorisation: model %d of %d, %.1f s", k + 1, count, time.perf_counter() - start)
    return memorization_scores(confidence, keep)


def model_seed(seed: int, k: int) -> int:
    """Weight-init and batch-order seed of memorisation model ``k`` (distinct from every other model's)."""
    return 40_000 + 1_000 * seed + k
