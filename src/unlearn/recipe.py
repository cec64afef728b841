"""A model trained with the params' recipe: what a study cell, and ``prepare``'s memorisation
scores, train from scratch (kept apart from :mod:`unlearn.protocol`, so that a stage that only
trains does not depend on the attacks and the methods)."""

from __future__ import annotations

import time

import torch

from unlearn.checkpoint import EpochCheckpoint
from unlearn.config import Params


def fit_model(images, labels, indices, params: Params, seed: int, stats: dict, num_classes: int,
              checkpoint: EpochCheckpoint | None, device: torch.device):
    """A model of ``params.model`` (normalising with ``stats``) trained from seed ``seed`` with the
    ``params.train`` recipe (FastClip per ``params.lipschitz``) on ``images[indices]``; returns it
    in eval mode and the seconds it took."""
    from unlearn.device import prepare_model
    from unlearn.lipschitz import clipping_callbacks
    from unlearn.models import create_model
    from unlearn.training import resumed_seconds, train_

    model = prepare_model(create_model(params.model.name, in_channels=images.shape[1], num_classes=num_classes,
                                       seed=seed, width=params.model.width, batch_norm=params.model.batch_norm,
                                       cifar_stem=params.model.cifar_stem,
                                       **stats), device)
    callbacks = clipping_callbacks(model, images.shape[1:], params.lipschitz, seed)
    idx = torch.as_tensor(indices)
    start = time.perf_counter()
    history = train_(model, images[idx], labels[idx], params.train, generator=torch.Generator().manual_seed(seed),
                     callbacks=callbacks, checkpoint=checkpoint)
    return model.eval(), time.perf_counter() - start + resumed_seconds(history)
