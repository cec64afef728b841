"""Stages ``train`` (the original model, on all of train, or imported from
``model.checkpoint``) and ``retrain`` (the gold standard: the same recipe from scratch on
remain only; a placeholder when ``retrain.enabled`` is false)."""

from __future__ import annotations

import time

from unlearn.config import Params
from unlearn.io import save_tensors, write_json, write_text
from unlearn_pipeline.common import (PLOTS_DIR, csv_text, load_prepared, model_path, remove_checkpoints, runtime_path,
                                     stage_device)
from unlearn_pipeline.fitting import log_layer_norms, train_model
from unlearn_pipeline.checkpoint_check import check_checkpoint
from unlearn_pipeline.model_store import input_example
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

SECTIONS = ("seed", "model", "train", "lipschitz", "execution.precision")
CURVE_HEADER = ["epoch", "loss", "accuracy", "lr"]


@stage("train", SECTIONS)
def train(params: Params, run: TrackedRun) -> None:
    """The original model: the recipe of ``train`` on all of train, or the weights of
    ``model.checkpoint`` (:mod:`unlearn.models.checkpoint`) when it is set."""
    if params.model.checkpoint:
        _import(params.model.checkpoint, params, run)
    else:
        _fit("original", "train", params, run)


@stage("retrain", (*SECTIONS, "retrain"))
def retrain(params: Params, run: TrackedRun) -> None:
    """The gold standard: the same recipe from scratch on remain only. With
    ``retrain.enabled: false``, an empty model file and runtime ``null`` stand in for it."""
    if params.retrain.enabled:
        check_checkpoint(params)
        _fit("retrain", "remain", params, run)
        return
    save_tensors(model_path("retrain"), {})
    write_json(runtime_path("retrain"), {"runtime_s": None})
    write_text(PLOTS_DIR / "train" / "retrain.csv", csv_text(CURVE_HEADER, []))
    write_text(PLOTS_DIR / "lipschitz" / "retrain.csv", csv_text(["layer", "norm"], []))
    run.set_tags({"retrain.enabled": "false"})


def _import(checkpoint: str, params: Params, run: TrackedRun) -> None:
    """The original model from an existing checkpoint; its runtime is the import's."""
    from unlearn.models.checkpoint import load_checkpoint
    from unlearn_pipeline.model_store import build_model

    data = load_prepared(stage_device(params))
    start = time.perf_counter()
    model = build_model(params, data.meta)
    load_checkpoint(model, checkpoint, params.model.name)
    run.set_tags({"model.checkpoint": checkpoint})
    _store("original", model, time.perf_counter() - start, [], params, data, run)


def _fit(name: str, split: str, params: Params, run: TrackedRun) -> None:
    from unlearn.training import resumed_seconds

    data = load_prepared(stage_device(params))
    start = time.perf_counter()
    model, rows = train_model(name, params, data, data.splits[split], run)
    _store(name, model, time.perf_counter() - start + resumed_seconds(rows), rows, params, data, run)


def _store(name: str, model, seconds: float, rows: list, params: Params, data, run: TrackedRun) -> None:
    """Model ``name``'s outputs: its weights, runtime, training curve (``rows``: the epochs) and
    layer norms, and the model in MLflow."""
    save_tensors(model_path(name), model.state_dict())
    remove_checkpoints(name)
    write_json(runtime_path(name), {"runtime_s": round(seconds, 3)})
    run.log_metrics({"runtime_s": seconds})
    log_layer_norms(name, model, params, data.meta, run)
    curve = PLOTS_DIR / "train" / f"{name}.csv"
    write_text(curve, csv_text(CURVE_HEADER, [[r.epoch, f"{r.loss:.6f}", f"{r.accuracy:.4f}", f"{r.lr:.6g}"]
                                              for r in rows]))
    run.log_model(model, f"unlearn-{name}", input_example(data))
    run.log_artifact(curve, "plots")
