"""Models in the stages: built from params for the prepared data, loaded from ``data/models``,
and an input example for MLflow's model signature."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearn.config import Params
from unlearn.errors import DataError
from unlearn.io import load_tensors
from unlearn_pipeline.common import Prepared, model_path, stage_device

if TYPE_CHECKING:
    import numpy as np
    import torch


def build_model(params: Params, meta: dict, seed: int | None = None) -> torch.nn.Module:
    """A freshly initialised model of ``params.model`` for the prepared data, on the stages'
    device (channels_last on CUDA). Its weights are drawn on the CPU first: the same on every device."""
    from unlearn.device import prepare_model
    from unlearn.models import create_model

    model = create_model(params.model.name, in_channels=meta["shape"][0], num_classes=len(meta["classes"]),
                         mean=meta["mean"], std=meta["std"], seed=params.seed if seed is None else seed,
                         width=params.model.width, batch_norm=params.model.batch_norm)
    return prepare_model(model, stage_device(params))


def load_model(name: str, params: Params, meta: dict) -> torch.nn.Module:
    """Rebuild the architecture from params and load ``data/models/<name>.pt`` (weights only)."""
    model = build_model(params, meta)
    state = load_tensors(model_path(name))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"{model_path(name)}: does not fit model {params.model.name!r} "
                        f"({str(exc).splitlines()[0]}); re-run the stage that wrote it") from None
    return model


def input_example(data: Prepared) -> np.ndarray:
    """One training image as the model takes it (float pixels in [0, 1]), for MLflow's model signature."""
    return data.images[:1].cpu().float().div(255).numpy()
