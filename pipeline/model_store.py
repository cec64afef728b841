"""Models in the stages: built from params for the prepared data, loaded from ``data/models``,
and an input example for MLflow's model signature."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearn.config import TORCHVISION_PREFIX, Params
from unlearn.errors import ConfigError, DataError
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
                         width=params.model.width, batch_norm=params.model.batch_norm,
                         cifar_stem=params.model.cifar_stem)
    if params.model.name.startswith(TORCHVISION_PREFIX):
        _check_input_size(model, params.model.name, meta["shape"])
    return prepare_model(model, stage_device(params))


def _check_input_size(model: torch.nn.Module, name: str, shape: list[int]) -> None:
    """One forward pass (eval mode: no statistics change) on the data's input shape."""
    import torch

    from unlearn.training import train_mode

    try:
        with torch.no_grad(), train_mode(model, False):
            model(torch.zeros(1, *shape))
    except RuntimeError as exc:
        raise ConfigError(f"params.yaml: model.name = {name}: does not run on {'x'.join(map(str, shape))} inputs "
                          f"({str(exc).splitlines()[0]}); try model.cifar_stem: true or another builder") from None


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
