"""A user's ``model.checkpoint`` checked before any stage trains for minutes."""

from __future__ import annotations

from unlearn.config import Params
from unlearn.io import read_json
from unlearn_pipeline.common import META
from unlearn_pipeline.model_store import build_model


def check_checkpoint(params: Params) -> None:
    """When ``model.checkpoint`` is set, load it into the model (file, weights only, every key
    and shape) and fail with its one-line error: each stage that trains calls this first, so a
    bad file fails in seconds, not after ``references`` or ``retrain`` trained for minutes
    (stage ``train`` imports it)."""
    if params.model.checkpoint:
        from unlearn.models.checkpoint import load_checkpoint

        load_checkpoint(build_model(params, read_json(META)), params.model.checkpoint, params.model.name)
