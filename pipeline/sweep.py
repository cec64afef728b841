"""Multi-seed results and learning-rate selection for the random track.

``tune`` chooses each method's learning rate from ``sweep.lr_grid`` by the smallest Avg
Gap (SVC) on a tuning cell whose forget set is not one of the evaluation forget sets
(one MLflow parent run per method, a nested run per grid point), ``sweep_cell@<cell>``
(a DVC ``matrix`` over ``sweep.seeds`` x ``sweep.forget_seeds``, so a new seed re-runs
only its new cells) runs :mod:`unlearn.protocol` for one cell with the chosen rates, and
``sweep_report`` aggregates the cells: mean, standard deviation and 95% interval.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.tracking import TrackedRun
from unlearn.config import Params
from unlearn.errors import ConfigError, DataError
from unlearn.io import read_json, write_json, write_text

SWEEP = Path("data/sweep")
TUNED = SWEEP / "tuned.json"
REPORT_KEYS = ("forget_acc", "retain_acc", "test_acc", "mia_svc", "mia_loss_auc", "avg_gap_svc", "runtime_vs_retrain")


def cell_path(seed: int, forget_seed: int) -> Path:
    return SWEEP / "cells" / f"seed{seed}-forget{forget_seed}.json"


def _cell(params: Params, seed: int, forget_seed: int):
    """The cell's models, their trainings checkpointed per epoch (see :func:`_remove_checkpoints`)."""
    from pipeline.stages import checkpoint_path, load_prepared, training_fingerprint
    from unlearn.checkpoint import EpochCheckpoint
    from unlearn.protocol import prepare_cell

    data = load_prepared()

    def checkpoint(name: str, indices) -> EpochCheckpoint:
        name = _cell_model(seed, forget_seed, name)
        return EpochCheckpoint(checkpoint_path(name), training_fingerprint(name, params, data, indices, seed))

    return prepare_cell(data.images, data.labels, data.meta.get("test_start"), params, seed, forget_seed, checkpoint)


def _cell_model(seed: int, forget_seed: int, name: str) -> str:
    return f"sweep seed{seed}-forget{forget_seed} {name}"


def _remove_checkpoints(seed: int, forget_seed: int) -> None:
    from pipeline.stages import remove_checkpoints

    remove_checkpoints(*(_cell_model(seed, forget_seed, name) for name in ("original", "retrain")))


def tune(params: Params, run: TrackedRun) -> None:
    """Each method's learning rate: the grid point with the smallest Avg Gap (SVC) on the
    tuning cell (methods without a grid keep the rate of their ``unlearn`` section)."""
    from unlearn.protocol import run_method

    sweep = params.sweep
    cell = _cell(params, sweep.tuning_seed, sweep.tuning_forget_seed)
    tuned = {}
    for method in sweep.methods:
        cfg = getattr(params.unlearn, method)
        grid = sweep.lr_grid.get(method, [cfg.lr])
        gaps = {}
        with TrackedRun(f"tune/{method}", {"method": method, "lr_grid": grid}, tags={"unlearn.job": "tune"},
                        parent=run.run_id) as parent:
            for lr in grid:
                with TrackedRun(f"tune/{method}/lr={lr:g}", {"lr": lr}, tags={"unlearn.job": "tune-point"},
                                parent=parent.run_id) as point:
                    metrics = run_method(cell, method, cfg.model_copy(update={"lr": lr}), sweep.tuning_seed)
                    point.log_metrics({k: float(v) for k, v in metrics.items()})
                gaps[lr] = metrics["avg_gap_svc"]
            best = min(grid, key=gaps.get)
            parent.log_metrics({"best_lr": best, "best_avg_gap_svc": gaps[best]})
        tuned[method] = {"lr": best, "avg_gap_svc": {f"{lr:g}": round(gap, 4) for lr, gap in gaps.items()}}
    write_json(TUNED, tuned)
    _remove_checkpoints(sweep.tuning_seed, sweep.tuning_forget_seed)


def sweep_cell(params: Params, run: TrackedRun, seed: str, forget_seed: str) -> None:
    """One cell: original, retrain and every method of ``sweep.methods`` (at its tuned rate)."""
    from unlearn.evaluation import avg_gap
    from unlearn.evaluation.gap import SVC_KEYS
    from unlearn.protocol import run_method

    if not (seed.isdigit() and forget_seed.isdigit()):
        raise ConfigError(f"sweep_cell: takes <seed> <forget_seed> as integers >= 0; got {seed!r} {forget_seed!r}")
    tuned = read_json(TUNED)
    seed_value, forget_value = int(seed), int(forget_seed)
    cell = _cell(params, seed_value, forget_value)
    retrain = {**cell.metrics["retrain"], "avg_gap_svc": 0.0, "runtime_vs_retrain": 1.0}
    results = {"original": {**cell.metrics["original"],
                            "avg_gap_svc": avg_gap(cell.metrics["original"], retrain, SVC_KEYS)},
               "retrain": retrain}
    for method in params.sweep.methods:
        if method not in tuned:
            raise DataError(f"{TUNED}: has no learning rate for {method}; re-run `dvc repro tune`")
        cfg = getattr(params.unlearn, method).model_copy(update={"lr": tuned[method]["lr"]})
        results[method] = run_method(cell, method, cfg, seed_value)
    write_json(cell_path(seed_value, forget_value), results)
    _remove_checkpoints(seed_value, forget_value)
    run.log_metrics({f"avg_gap_svc.{name}": float(m["avg_gap_svc"]) for name, m in results.items()})


def sweep_report(params: Params, run: TrackedRun) -> None:
    """Mean, std and 95% interval over the cells of every model's metrics:
    ``metrics/sweep.json`` and ``reports/sweep.md``."""
    from pipeline.stages import REPORTS_DIR, _markdown_table
    from unlearn.protocol import aggregate

    sweep = params.sweep
    paths = [cell_path(s, f) for s in sweep.seeds for f in sweep.forget_seeds]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"{missing[0]}: file not found; run `dvc repro` (sweep_cell stages)")
    cells = [read_json(p) for p in paths]
    tuned = read_json(TUNED)
    models = ["retrain", "original", *sweep.methods]
    summary = {name: {key: {k: round(v, 4) for k, v in aggregate([c[name][key] for c in cells]).items()}
                      for key in REPORT_KEYS if key in cells[0][name]} for name in models}
    write_json(Path("metrics/sweep.json"), {"cells": len(cells), "models": summary,
                                            "lr": {m: t["lr"] for m, t in tuned.items()}})
    header = ["model", "lr", *REPORT_KEYS]
    rows = [[name, f"{tuned[name]['lr']:g}" if name in tuned else "-",
             *(f"{summary[name][k]['mean']:.2f} ± {summary[name][k]['ci95']:.2f}" if k in summary[name] else "-"
               for k in REPORT_KEYS)] for name in models]
    note = (f"Mean ± half-width of the 95% Student-t interval over {len(cells)} cells (model seeds {sweep.seeds} x "
            f"forget-set seeds {sweep.forget_seeds}); each cell has its own split, original and retrained model. "
            f"Accuracies, MIA-efficacy (SVC) and loss-attack AUC in percent; Avg Gap (SVC) to the cell's retrained "
            f"model over forget / retain / test accuracy and MIA-efficacy. lr: the rate chosen on the tuning cell "
            f"(seed {sweep.tuning_seed}, forget-set seed {sweep.tuning_forget_seed}).")
    write_text(REPORTS_DIR / "sweep.md", f"# Sweep over seeds\n\n{note}\n\n{_markdown_table(header, rows)}\n")
    run.log_metrics({f"avg_gap_svc.{name}": summary[name]["avg_gap_svc"]["mean"] for name in models})
    run.log_artifact(REPORTS_DIR / "sweep.md", "report")
