"""Training a model from scratch in a stage: per-epoch checkpoints, MLflow curves, layer norms.

Shared by the stage families that train (train / retrain, references, transfer, the
class track's retrained models, the seed study's cells)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from unlearn.config import Params
from unlearn.io import write_text
from unlearn_pipeline.common import PLOTS_DIR, Prepared, checkpoint_path, csv_text, figure
from unlearn_pipeline.model_store import build_model

if TYPE_CHECKING:
    import numpy as np
    import torch

    from unlearn_pipeline.tracking import TrackedRun

log = logging.getLogger(__name__)


def training_fingerprint(name: str, params: Params, data: Prepared, indices: np.ndarray, seed: int) -> str:
    """What a training depends on: its recipe, seed, samples, the prepared images and the library's code."""
    import hashlib
    import json

    import numpy as np

    import unlearn

    digest = hashlib.sha256(json.dumps({
        "name": name, "seed": seed, "model": params.model.model_dump(), "train": params.train.model_dump(),
        "lipschitz": params.lipschitz.model_dump(), "images": data.meta["sha256"]["images.pt"],
    }, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    for source in sorted(Path(unlearn.__file__).parent.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def train_model(name: str, params: Params, data: Prepared, indices: np.ndarray, run: TrackedRun,
                seed: int | None = None, metric_prefix: str = "") -> tuple[torch.nn.Module, list]:
    """A model built and trained from ``params`` (model, train, lipschitz) on ``indices``;
    per-epoch metrics go to MLflow, their names prefixed by ``metric_prefix``.

    Every ``execution.checkpoint_every`` epochs are checkpointed to :func:`checkpoint_path`; a re-run with the same
    recipe, data and code resumes from the last one (the caller removes it once the
    model is stored). Returns the model and every epoch's statistics."""
    import torch

    from unlearn.checkpoint import EpochCheckpoint
    from unlearn.lipschitz import clipping_callbacks
    from unlearn.training import EpochStats, train_

    seed = params.seed if seed is None else seed
    model = build_model(params, data.meta, seed)
    idx = torch.as_tensor(indices)
    checkpoint = EpochCheckpoint(checkpoint_path(name), training_fingerprint(name, params, data, indices, seed),
                                 params.execution.checkpoint_every)

    def on_epoch(stats: EpochStats) -> None:
        log.info("%s epoch %d/%d: loss %.4f, acc %.2f%%, %.0f img/s", name, stats.epoch, params.train.epochs,
                 stats.loss, stats.accuracy, stats.images_per_s)
        run.log_metrics({f"{metric_prefix}{key}": value for key, value in (
            ("train_loss", stats.loss), ("train_acc", stats.accuracy), ("lr", stats.lr),
            ("images_per_s", stats.images_per_s))}, step=stats.epoch)

    history = train_(model, data.images[idx], data.labels[idx], params.train,
                     generator=torch.Generator().manual_seed(seed),
                     callbacks=clipping_callbacks(model, data.meta["shape"], params.lipschitz, seed),
                     on_epoch=on_epoch, progress=sys.stderr.isatty(), checkpoint=checkpoint)
    resumed = sum(stats.resumed for stats in history)
    if resumed:
        log.info("%s: resumed after epoch %d from %s", name, resumed, checkpoint.path)
        run.set_tags({f"{metric_prefix}resumed_after_epoch": str(resumed)})
    return model, history


def log_layer_norms(name: str, model: torch.nn.Module, params: Params, meta: dict, run: TrackedRun) -> None:
    """The exact spectral norm of every layer as FastClip sees it (conv + BN merged in
    ``bn: composite``, conv alone otherwise) and the model's Lipschitz upper bound:
    a dvc plots CSV and MLflow metrics."""
    import torch

    from unlearn.lipschitz import affine_layers, lipschitz_bound, top_singular

    bn = "composite" if params.lipschitz.bn == "composite" else "ignore"
    norms = {layer.name: float(top_singular(layer.module, layer.input_shape, 1, 100,
                                            generator=torch.Generator().manual_seed(0))[0][0])
             for layer in affine_layers(model, meta["shape"], bn)}
    try:
        bounds = {"lipschitz_bound": lipschitz_bound(model, meta["shape"])[0]}
    except ValueError as refused:  # an architecture the bound has no rule for
        log.warning("%s: no Lipschitz bound: %s", name, refused)
        bounds = {}
    path = PLOTS_DIR / "lipschitz" / f"{name}.csv"
    write_text(path, csv_text(["layer", "norm"], [[layer, f"{norm:.6f}"] for layer, norm in norms.items()]))
    log.info("%s: largest layer norm %.4f, Lipschitz bound %.4g", name, max(norms.values()),
             bounds.get("lipschitz_bound", float("nan")))
    run.log_metrics({**bounds, "max_layer_norm": max(norms.values()),
                     **{f"layer_norm.{layer}": norm for layer, norm in norms.items()}})
    run.log_artifact(path, "plots")
    with figure(f"{name}_layer_norms.png", run) as (fig, ax):
        ax.barh(range(len(norms)), list(norms.values()))
        ax.set_yticks(range(len(norms)), list(norms))
        ax.invert_yaxis()
        ax.set(xlabel="spectral norm", ylabel="layer", title=f"{name}: per-layer spectral norms")
