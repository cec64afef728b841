"""Stages ``train`` (the original model, on all of train) and ``retrain`` (the gold
standard: the same recipe from scratch on remain only)."""

from __future__ import annotations

import time

from unlearn.config import Params
from unlearn.io import save_tensors, write_json, write_text
from unlearn_pipeline.common import (PLOTS_DIR, csv_text, load_prepared, model_path, remove_checkpoints, runtime_path,
                                     stage_device)
from unlearn_pipeline.fitting import log_layer_norms, train_model
from unlearn_pipeline.model_store import input_example
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

SECTIONS = ("seed", "model", "train", "lipschitz", "execution.precision")


@stage("train", SECTIONS)
def train(params: Params, run: TrackedRun) -> None:
    """The original model: the recipe of ``train`` on all of train."""
    _fit("original", "train", params, run)


@stage("retrain", SECTIONS)
def retrain(params: Params, run: TrackedRun) -> None:
    """The gold standard: the same recipe from scratch on remain only."""
    _fit("retrain", "remain", params, run)


def _fit(name: str, split: str, params: Params, run: TrackedRun) -> None:
    from unlearn.training import resumed_seconds

    data = load_prepared(stage_device(params))
    start = time.perf_counter()
    model, rows = train_model(name, params, data, data.splits[split], run)
    seconds = time.perf_counter() - start + resumed_seconds(rows)
    save_tensors(model_path(name), model.state_dict())
    remove_checkpoints(name)
    write_json(runtime_path(name), {"runtime_s": round(seconds, 3)})
    run.log_metrics({"runtime_s": seconds})
    log_layer_norms(name, model, params, data.meta, run)
    curve = PLOTS_DIR / "train" / f"{name}.csv"
    write_text(curve, csv_text(["epoch", "loss", "accuracy", "lr"],
                               [[r.epoch, f"{r.loss:.6f}", f"{r.accuracy:.4f}", f"{r.lr:.6g}"] for r in rows]))
    run.log_model(model, f"unlearn-{name}", input_example(data))
    run.log_artifact(curve, "plots")
