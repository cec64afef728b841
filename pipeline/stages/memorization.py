"""Stage ``memorization``: each train sample's memorisation score, for ``data.forget.mode:
memorized`` (:mod:`unlearn.evaluation.memorization`).

It runs before ``prepare``, on the dataset and the train / test split alone, with models of
its own: the forget set it leads to never depends on the reference models that later judge
its unlearning. In any other mode it writes an empty file and trains nothing.
"""

from __future__ import annotations

import logging
import time

from unlearn.config import Params
from unlearn.io import save_tensors
from unlearn_pipeline.common import CACHE_DIR, MEMORIZATION, stage_device
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

log = logging.getLogger(__name__)
KEEP_STREAM = 8  # the models' train halves: a seed stream of their own (the references draw [seed])


@stage("memorization", ("seed", "data.dataset", "data.root", "data.path", "data.download", "data.test_fraction",
                        "data.forget.mode", "model", "train", "lipschitz", "memorization", "execution.precision"))
def memorization(params: Params, run: TrackedRun) -> None:
    """With ``data.forget.mode: memorized``: ``memorization.references`` models, each on a
    seeded random half of train (every sample in the half of them), and each train sample's
    score, saved as ``data/memorization.pt`` (``train``: the train indices, ``scores``)."""
    if params.data.forget.mode != "memorized":
        save_tensors(MEMORIZATION, {})
        return
    import numpy as np
    import torch

    from unlearn.data import load_dataset, train_test_split
    from unlearn.device import precision
    from unlearn.evaluation import predict
    from unlearn.evaluation.memorization import memorization_scores, true_class_confidence
    from unlearn.evaluation.suite import keep_matrix
    from unlearn.protocol import fit_model, normalisation

    cfg, k_models = params.data, params.memorization.references
    data = load_dataset(cfg.dataset, root=cfg.root, path=cfg.path, download=cfg.download, cache_dir=CACHE_DIR)
    train, _ = train_test_split(len(data.labels), seed=params.seed, test_start=data.test_start,
                                test_fraction=cfg.test_fraction)
    keep = keep_matrix(k_models, len(train), [params.seed, KEEP_STREAM])
    recipe = params.model_copy(update={"train": params.train.model_copy(
        update={"epochs": params.memorization.epochs or params.train.epochs})})
    stats, device = normalisation(data.images, train), stage_device(params)
    confidence = np.empty((k_models, len(train)))
    with precision(params.execution.precision):
        for k in range(k_models):
            start = time.perf_counter()
            model, _ = fit_model(data.images, data.labels, train[keep[k]], recipe, model_seed(params.seed, k), stats,
                                 len(data.classes), None, device)
            confidence[k] = true_class_confidence(predict(model, data.images[torch.as_tensor(train)]),
                                                  data.labels[torch.as_tensor(train)])
            log.info("memorization: model %d of %d, %.1f s", k + 1, k_models, time.perf_counter() - start)
    scores = memorization_scores(confidence, keep)
    save_tensors(MEMORIZATION, {"train": torch.as_tensor(train), "scores": torch.as_tensor(scores)})
    run.log_metrics({"score_mean": float(scores.mean()), "score_median": float(np.median(scores)),
                     "score_max": float(scores.max())})


def model_seed(seed: int, k: int) -> int:
    """Weight-init and batch-order seed of memorisation model ``k`` (distinct from every other model's)."""
    return 40_000 + 1_000 * seed + k
