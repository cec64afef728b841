"""The class track's seed study (``studies/dvc.yaml``): MIA-NN and U-LiRA over seeds and
forgotten classes, with learning rates chosen on a class that is not evaluated.

``class_cell@<seed>-<class>`` (a DVC ``matrix`` over ``class_sweep.seeds`` x
``class_sweep.classes``, plus ``class_tuning_cell``) trains a cell's original model,
``class_track.retrain_seeds`` models retrained without the class and U-LiRA's
``ulira.shadows`` shadows (and as many retrained shadows), on the prepared train split
with the cell's model seed; ``class_method@<method>`` chooses the method's learning rate
on the tuning cell by the smallest ``class_sweep.select_by``, then unlearns the class
(and every shadow's half of its candidates) in every cell; ``class_report`` aggregates
over cells (``metrics/class_sweep.json``, ``reports/class_sweep.md``), with each method's
paired difference from TRW and retrain's seed-to-seed MIA-NN noise floor (findings F5, F6).
"""

from __future__ import annotations

import logging
from pathlib import Path

from unlearn.config import Params
from unlearn.errors import ConfigError, DataError
from unlearn.io import load_tensors, read_json, save_tensors, write_json, write_text
from unlearn_pipeline.class_study import cell_dir, class_cells, class_variants, method_path
from unlearn_pipeline.common import (REPORTS_DIR, Prepared, load_prepared, markdown_table, remove_checkpoints,
                                     stage_device)
from unlearn_pipeline.fitting import train_model
from unlearn_pipeline.model_store import build_model
from unlearn_pipeline.stages import STUDY_THREADS, stage
from unlearn_pipeline.tracking import TrackedRun

log = logging.getLogger(__name__)

CELL_SECTIONS = ("model", "train", "lipschitz", "class_track.retrain_seeds", "ulira", "mia_nn", "mia.repeats",
                 "execution.precision")
REPORT_KEYS = ("forget_acc", "test_acc", "mia_nn", "mia_nn_gap", "ulira_auc", "ulira_gap", "tv_to_retrain",
               "to_nearest", "avg_gap", "runtime_vs_retrain")
GAP_KEYS = ("mia_nn_gap", "ulira_gap", "tv_to_retrain")


def _ints(stage_name: str, seed: str, forget_class: str) -> tuple[int, int]:
    if not (seed.isdigit() and forget_class.isdigit()):
        raise ConfigError(f"{stage_name}: takes <seed> <class> as integers >= 0; got {seed!r} {forget_class!r}")
    return int(seed), int(forget_class)


def _cell_split(data: Prepared, forget_class: int) -> dict:
    from unlearn.data import class_splits

    return class_splits(data.labels.numpy(), data.splits["train"], data.splits["test"], forget_class)


def _candidates(data: Prepared, params: Params, split: dict, seed: int, forget_class: int):
    from unlearn_pipeline.ulira import make_candidates

    return make_candidates(split["forget"], split["forget_test"], split["remain"], data.splits["test"],
                           params.ulira.shadows, (seed, 2, forget_class))


@stage("class_cell", CELL_SECTIONS, threads=STUDY_THREADS)
def class_cell(params: Params, run: TrackedRun, seed: str, forget_class: str) -> None:
    """One cell's models, in ``data/class_sweep/cells/seed<seed>-class<class>/``: the original's
    and the shadows' weights, every model's logits, and the original's and each retrained
    model's metrics (each retrained model measured against the others: the noise floor)."""
    import time

    import torch

    from unlearn.evaluation import predict

    seed_value, class_value = _ints("class_cell", seed, forget_class)
    data = load_prepared(stage_device(params))
    if class_value >= len(data.meta["classes"]):
        raise ConfigError(f"class_cell: class {class_value}: the data has classes 0..{len(data.meta['classes']) - 1}")
    folder = cell_dir(seed_value, class_value)
    split = _cell_split(data, class_value)
    found = _candidates(data, params, split, seed_value, class_value)
    names = []

    def fit(name: str, indices, model_seed: int):
        names.append(f"{folder.name} {name}")
        model, _ = train_model(names[-1], params, data, indices, run, seed=model_seed,
                               metric_prefix=f"{name.replace(' ', '_')}.")
        return model

    original = fit("original", data.splits["train"], seed_value)
    retrained, seconds = [], []
    for k in range(params.class_track.retrain_seeds):
        start = time.perf_counter()
        model = fit(f"retrain {k}", split["remain"], 1_000 * seed_value + k + 1)
        seconds.append(time.perf_counter() - start)
        retrained.append(predict(model, data.images))
    idx = torch.as_tensor(found.indices)
    blob = {"original": original.state_dict(), "retrain_logits": torch.stack(retrained)}
    shadow_logits = {"original": [], "retrain": []}
    for s in range(params.ulira.shadows):
        shadow = fit(f"shadow {s}", found.shadow_train(s), 30_000 + 1_000 * seed_value + s)
        blob[f"shadow_{s}"] = shadow.state_dict()
        shadow_logits["original"].append(predict(shadow, data.images[idx]))
        again = fit(f"retrained shadow {s}", found.remain, 40_000 + 1_000 * seed_value + s)
        shadow_logits["retrain"].append(predict(again, data.images[idx]))
    for kind, logits in shadow_logits.items():
        if logits:
            blob[f"{kind}_shadow_logits"] = torch.stack(logits)
    save_tensors(folder / "cell.pt", blob)
    cell = _Cell(data, params, seed_value, class_value, split, found, blob)
    metrics = {"original": cell.measure(predict(original, data.images), "original"),
               "retrain": cell.retrain_rows()}
    write_json(folder / "cell.json", {"seed": seed_value, "class": class_value, "metrics": metrics,
                                      "retrain_s": sum(seconds) / len(seconds)})
    remove_checkpoints(*names)
    run.log_metrics({f"{key}.original": float(v) for key, v in metrics["original"].items()})


class _Cell:
    """A stored cell and how a model of it is measured."""

    def __init__(self, data: Prepared, params: Params, seed: int, forget_class: int, split: dict, found, blob: dict):
        import torch

        from unlearn.evaluation.class_track import forget_inputs

        self.data, self.params, self.seed, self.forget_class = data, params, seed, forget_class
        self.split, self.found, self.blob = split, found, blob
        inputs = forget_inputs(split)
        self.retrained_probs = [torch.softmax(logits[inputs].double(), 1).numpy() for logits in blob["retrain_logits"]]

    def measure(self, logits, kind: str | None, shadow_logits=None, references: list | None = None) -> dict:
        """Class-track metrics of a model (logits on every sample); U-LiRA against the shadows of
        ``kind`` (stored: ``original``, ``retrain``) or ``shadow_logits``."""
        from unlearn.evaluation.class_track import class_metrics
        from unlearn_pipeline.ulira import score

        metrics = class_metrics(logits, self.data.labels, self.split,
                                self.retrained_probs if references is None else references, self.forget_class,
                                self.params.mia_nn, self.seed)
        if shadow_logits is None and kind is not None and f"{kind}_shadow_logits" in self.blob:
            shadow_logits = self.blob[f"{kind}_shadow_logits"]
        if shadow_logits is not None:
            metrics.update(score(logits, shadow_logits, self.found, self.data, self.params))
        return metrics

    def retrain_rows(self) -> dict:
        """Retrain's metrics: the mean over its seeds, each against the others (``*_std`` beside)."""
        import numpy as np

        probs = self.retrained_probs
        rows = [self.measure(logits, "retrain", references=probs[:k] + probs[k + 1:])
                for k, logits in enumerate(self.blob["retrain_logits"])]
        mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        floor = float(np.mean([abs(r["mia_nn"] - np.mean([o["mia_nn"] for o in rows if o is not r])) for r in rows]))
        return {**mean, "mia_nn_floor": floor}


def _load_cell(params: Params, data: Prepared, seed: int, forget_class: int) -> tuple[_Cell, dict]:
    folder = cell_dir(seed, forget_class)
    if not (folder / "cell.json").exists():
        raise DataError(f"{folder / 'cell.json'}: file not found; run `dvc repro studies/dvc.yaml` (class_cell stages)")
    split = _cell_split(data, forget_class)
    cell = _Cell(data, params, seed, forget_class, split, _candidates(data, params, split, seed, forget_class),
                 load_tensors(folder / "cell.pt"))
    return cell, read_json(folder / "cell.json")


def _run_method(cell: _Cell, info: dict, method: str, cfg, shadows: bool) -> dict:
    """``method`` from a copy of the cell's original model (and, with ``shadows``, from each
    U-LiRA shadow): its metrics and gaps to the cell's retrained models."""
    import time

    import torch

    from unlearn.evaluation import avg_gap, predict
    from unlearn.evaluation.gap import CLASS_KEYS
    from unlearn.unlearning import METHODS, ForgetTask
    from unlearn_pipeline.ulira import unlearned_logits

    data, params = cell.data, cell.params
    model = build_model(params, data.meta)
    model.load_state_dict(cell.blob["original"])
    task = ForgetTask(data.images, data.labels, torch.as_tensor(cell.split["forget"]),
                      torch.as_tensor(cell.split["remain"]), len(data.meta["classes"]),
                      holdout=torch.as_tensor(data.splits["test"]))
    start = time.perf_counter()
    METHODS.get(method).run(model, task, cfg, torch.Generator().manual_seed(cell.seed))
    seconds = time.perf_counter() - start
    shadow_logits = None
    if shadows and params.ulira.shadows:
        states = [cell.blob[f"shadow_{s}"] for s in range(params.ulira.shadows)]
        seeds = [50_000 + 1_000 * cell.seed + s for s in range(params.ulira.shadows)]
        shadow_logits = unlearned_logits(method, cfg, cell.found, states, seeds, params, data)
    metrics = cell.measure(predict(model, data.images), None, shadow_logits)
    retrain = info["metrics"]["retrain"]
    metrics.update(mia_nn_gap=abs(metrics["mia_nn"] - retrain["mia_nn"]), avg_gap=avg_gap(metrics, retrain, CLASS_KEYS),
                   runtime_s=seconds, runtime_vs_retrain=seconds / info["retrain_s"])
    if "ulira_auc" in metrics:
        metrics["ulira_gap"] = abs(metrics["ulira_auc"] - retrain["ulira_auc"])
    return metrics


@stage("class_method", ("unlearn_class.${item}", "class_sweep.lr_grid", "class_sweep.seeds", "class_sweep.classes",
                        "class_sweep.tuning_seed", "class_sweep.tuning_class", "class_sweep.select_by", "model",
                        "ulira", "mia_nn", "mia.repeats", "execution.precision"), threads=STUDY_THREADS)
def class_method(params: Params, run: TrackedRun, method: str) -> None:
    """One class-track method of the study: its learning rate, the grid point with the
    smallest ``class_sweep.select_by`` on the tuning cell (a method without a grid keeps its
    ``unlearn_class`` rate), then its metrics on every cell, U-LiRA included, in
    ``data/class_sweep/methods/<method>.json``."""
    sweep = params.class_sweep
    if method not in params.unlearn_class.methods:
        raise ConfigError(f"class_method: unknown method {method!r}; params.yaml's unlearn_class has "
                          f"{', '.join(params.unlearn_class.methods)}")
    data = load_prepared(stage_device(params))
    cfg = getattr(params.unlearn_class, method)
    grid = _lr_grid(method, cfg, sweep.lr_grid)
    tuning, tuning_info = _load_cell(params, data, sweep.tuning_seed, sweep.tuning_class)
    gaps = {}
    for lr in grid:
        gaps[lr] = _run_method(tuning, tuning_info, method, _with_lr(cfg, lr), shadows=False)[sweep.select_by]
        log.info("%s, tuning cell, lr %s: %s %.4f", method, _lr_text(lr), sweep.select_by, gaps[lr])
    best = min(grid, key=gaps.get)
    chosen = _with_lr(cfg, best)
    cells = {}
    for seed in sweep.seeds:
        for forget_class in sweep.classes:
            cell, info = _load_cell(params, data, seed, forget_class)
            name = cell_dir(seed, forget_class).name
            cells[name] = _run_method(cell, info, method, chosen, shadows=True)
            log.info("%s, cell %s: avg_gap %.4f", method, name, cells[name]["avg_gap"])
    write_json(method_path(method), {"lr": best, "select_by": sweep.select_by,
                                     "tuning_gap_by_lr": {_lr_text(lr): round(gap, 4) for lr, gap in gaps.items()},
                                     "cells": cells})
    run.log_metrics({**({} if best is None else {"best_lr": best}), **{f"{key}.{name}": float(m[key]) for name, m in cells.items()
                                         for key in GAP_KEYS if key in m}})


@stage("class_report", ("class_sweep.seeds", "class_sweep.classes", "class_sweep.methods", "class_sweep.tuning_seed",
                        "class_sweep.tuning_class", "class_sweep.select_by", "ulira.shadows", "findings"))
def class_report(params: Params, run: TrackedRun) -> None:
    """Mean, std and 95% interval over the cells of every model's metrics, retrain's MIA-NN
    noise floor and each method's paired difference from TRW (per cell, the method's gap
    minus TRW's): ``metrics/class_sweep.json`` and ``reports/class_sweep.md``."""
    from unlearn.protocol import aggregate

    sweep = params.class_sweep
    per_model = class_cells(params)
    names = [cell_dir(s, c).name for s in sweep.seeds for c in sweep.classes]
    methods = {m: read_json(method_path(m)) for m in sweep.methods}
    summary = {name: {key: _rounded(aggregate([c[key] for c in cells])) for key in (*REPORT_KEYS, "mia_nn_floor")
                      if key in cells[0]} for name, cells in per_model.items()}
    floor = per_model["retrain"]
    above_floor = {m: _rounded(aggregate([c["mia_nn_gap"] - f["mia_nn_floor"] for c, f in zip(per_model[m], floor)]))
                   for m in methods if m != "trw"}
    from_trw = {}
    if "trw" in methods:
        for m in methods:
            if m != "trw":
                from_trw[m] = {key: _rounded(aggregate([c[key] - t[key]
                                                        for c, t in zip(per_model[m], per_model["trw"])]))
                               for key in GAP_KEYS if key in per_model[m][0]}
    write_json(Path("metrics/class_sweep.json"), {
        "cells": len(names), "classes": sweep.classes, "seeds": sweep.seeds, "models": summary,
        "mia_nn_above_floor": above_floor, "differences_from_trw": from_trw, "select_by": sweep.select_by,
        "lr": {m: result["lr"] for m, result in methods.items()}})
    verdicts = {}
    if "trw" in methods and len(methods) > 1:
        from unlearn.findings import class_study_findings

        verdicts = class_study_findings(per_model, params.findings.margins, params.findings.alpha,
                                        variants=class_variants(params))
    write_text(REPORTS_DIR / "class_sweep.md", _markdown(params, names, summary, above_floor, from_trw, methods,
                                                         verdicts))
    run.log_metrics({f"{key}.{name}": summary[name][key]["mean"] for name in per_model for key in GAP_KEYS
                     if key in summary[name]})
    run.log_artifact(REPORTS_DIR / "class_sweep.md", "report")


def _lr_grid(method: str, cfg, lr_grids: dict[str, list[float]]) -> list[float | None]:
    """The rates tried (its ``lr_grid`` entry, else its own); ``[None]`` for a method without a
    learning rate (SSD: training-free), which ``lr_grid`` must then not name."""
    if "lr" in type(cfg).model_fields:
        return lr_grids.get(method, [cfg.lr])
    if method in lr_grids:
        raise ConfigError(f"class_sweep.lr_grid.{method}: {method} has no learning rate (training-free); remove it")
    return [None]


def _with_lr(cfg, lr: float | None):
    return cfg if lr is None else cfg.model_copy(update={"lr": lr})


def _lr_text(lr: float | None) -> str:
    return "-" if lr is None else f"{lr:g}"


def _rounded(summary: dict) -> dict:
    return {k: round(v, 4) for k, v in summary.items()}


def _markdown(params: Params, names: list[str], summary: dict, above_floor: dict, from_trw: dict,
              methods: dict, verdicts: dict) -> str:
    sweep = params.class_sweep

    def cell(stats: dict | None, digits: int = 2) -> str:
        return "-" if stats is None else f"{stats['mean']:.{digits}f} ± {stats['ci95']:.{digits}f}"

    header = ["model", "lr", *REPORT_KEYS]
    rows = [[name, _lr_text(methods[name]["lr"]) if name in methods else "-",
             *(cell(summary[name].get(k), 3 if k == "tv_to_retrain" else 2) for k in REPORT_KEYS)]
            for name in summary]
    floor = summary["retrain"]["mia_nn_floor"]
    note = (f"Mean ± half-width of the 95% Student-t interval over {len(names)} cells (model seeds {sweep.seeds} x "
            f"forgotten classes {sweep.classes}); each cell has its own original model, "
            f"{params.class_track.retrain_seeds} retrained models and {params.ulira.shadows} U-LiRA shadows. "
            f"Accuracies and AUCs in percent. Gaps are to the cell's retrained models (retrain's own row: each "
            f"seed against the others). lr: the rate with the smallest {sweep.select_by} on the tuning cell "
            f"(seed {sweep.tuning_seed}, class {sweep.tuning_class}, never evaluated). Retrain's seed-to-seed "
            f"MIA-NN noise floor: {cell(floor)}.")
    parts = ["# Class track over seeds and classes", note, markdown_table(header, rows)]
    if verdicts:
        parts.append("\n".join(f"- **{key}** ({f['holds']}): {f['claim']}.{' ' + f['why'] if f['why'] else ''}"
                                for key, f in verdicts.items()))
    if above_floor:
        parts += ["## MIA-NN gap minus retrain's noise floor (F5)", "Per cell, then mean ± 95% interval: an "
                  "interval above 0 means MIA-NN tells the method's unlearned class from retraining.",
                  markdown_table(["method", "MIA-NN gap - floor"], [[m, cell(s)] for m, s in above_floor.items()])]
    if from_trw:
        parts += ["## Gaps minus TRW's (F6)", "Per cell, the method's gap minus TRW's, then mean ± 95% interval: "
                  "an interval above 0 means TRW is closer to retraining.",
                  markdown_table(["method", *GAP_KEYS], [[m, *(cell(d.get(k), 3 if k == "tv_to_retrain" else 2)
                                                               for k in GAP_KEYS)] for m, d in from_trw.items()])]
    return "\n\n".join(parts) + "\n"
