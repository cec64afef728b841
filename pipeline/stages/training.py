"""Stages ``train`` (the original model, on all of train, or imported from
``original.checkpoint``) and ``retrain`` (the gold standard: the same recipe from scratch on
remain only; a placeholder when ``retrain.enabled`` is false)."""

from __future__ import annotations

import time

from unlearn.config import Params
from unlearn.io import load_tensors, save_tensors, write_json, write_text
from unlearn_pipeline.common import (IMPORTED, PLOTS_DIR, csv_text, load_prepared, model_path, remove_checkpoints,
                                     runtime_path, stage_device)
from unlearn_pipeline.fitting import log_layer_norms, train_model
from unlearn_pipeline.model_store import build_model, input_example
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

SECTIONS = ("seed", "model", "train", "lipschitz", "execution.precision")
CURVE_HEADER = ["epoch", "loss", "accuracy", "lr"]


@stage("train", SECTIONS)
def train(params: Params, run: TrackedRun) -> None:
    """The original model: the recipe of ``train`` on all of train, or the weights stage
    ``import_model`` imported from ``original.checkpoint`` (``data/models/imported.pt``, empty when
    unset). It reads the weights, not the setting: a moved checkpoint changes nothing here."""
    imported = load_tensors(IMPORTED)
    if imported:
        _import(imported, params, run)
    else:
        _fit("original", "train", params, run)


@stage("retrain", (*SECTIONS, "retrain"))
def retrain(params: Params, run: TrackedRun) -> None:
    """The gold standard: the same recipe from scratch on remain only. With
    ``retrain.enabled: false``, an empty model file and runtime ``null`` stand in for it."""
    if params.retrain.enabled:
        _fit("retrain", "remain", params, run)
        return
    save_tensors(model_path("retrain"), {})
    write_json(runtime_path("retrain"), {"runtime_s": None})
    write_text(PLOTS_DIR / "train" / "retrain.csv", csv_text(CURVE_HEADER, []))
    write_text(PLOTS_DIR / "lipschitz" / "retrain.csv", csv_text(["layer", "norm"], []))
    run.set_tags({"retrain.enabled": "false"})


def _import(state: dict, params: Params, run: TrackedRun) -> None:
    """The original model from the imported weights. Its runtime is ``null`` (it was trained
    elsewhere; the seconds of a copy would only make every later stage re-run), and it is not
    registered again (``import_model`` did; a new ``train.*`` re-runs this copy, nothing more)."""
    data = load_prepared(stage_device(params))
    model = build_model(params, data.meta)
    model.load_state_dict(state)
    run.set_tags({"original": "imported"})
    _store("original", model, None, [], params, data, run)


def _fit(name: str, split: str, params: Params, run: TrackedRun) -> None:
    from unlearn.training import resumed_seconds

    data = load_prepared(stage_device(params))
    start = time.perf_counter()
    model, rows = train_model(name, params, data, data.splits[split], run)
    _store(name, model, time.perf_counter() - start + resumed_seconds(rows), rows, params, data, run)


def _store(name: str, model, seconds: float | None, rows: list, params: Params, data, run: TrackedRun) -> None:
    """Model ``name``'s outputs: its weights, runtime (``None``: imported, not trained here),
    training curve (``rows``: the epochs) and layer norms, and, when trained here, the model in MLflow."""
    save_tensors(model_path(name), model.state_dict())
    remove_checkpoints(name)
    write_json(runtime_path(name), {"runtime_s": None if seconds is None else round(seconds, 3)})
    if seconds is not None:
        run.log_metrics({"runtime_s": seconds})
    log_layer_norms(name, model, params, data.meta, run)
    curve = PLOTS_DIR / "train" / f"{name}.csv"
    write_text(curve, csv_text(CURVE_HEADER, [[r.epoch, f"{r.loss:.6f}", f"{r.accuracy:.4f}", f"{r.lr:.6g}"]
                                              for r in rows]))
    if seconds is not None:
        run.log_model(model, f"unlearn-{name}", input_example(data))
    run.log_artifact(curve, "plots")
