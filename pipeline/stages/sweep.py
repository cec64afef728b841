"""The seed study of the random track (``studies/dvc.yaml``): multi-seed results with
learning-rate selection.

``sweep_cell@<seed>-<forget seed>`` (a DVC ``matrix`` over ``sweep.seeds`` x
``sweep.forget_seeds``, plus the tuning cell) trains a cell's reference models, original
and retrained models and builds its D_A (:func:`unlearn_pipeline.cells.build_cell`), and
stores them; ``sweep_method@<method>`` (one stage per method of ``sweep.methods``, so
that editing ``unlearn.amun`` re-runs AMUN alone) chooses the method's learning rate
from ``sweep.lr_grid`` by the smallest ``sweep.select_by`` on the tuning cell, whose
forget set is not one of the evaluation forget sets, then runs the method on every cell;
``sweep_report`` aggregates: mean, standard deviation and 95% interval, and each
method's paired difference from AMUN.
"""

from __future__ import annotations

import logging
from pathlib import Path

from unlearn.config import Params
from unlearn.errors import ConfigError, DataError
from unlearn.io import load_tensors, read_json, save_tensors, write_json, write_text
from unlearn_pipeline.cells import build_cell
from unlearn_pipeline.common import REPORTS_DIR, load_prepared, markdown_table, stage_device
from unlearn_pipeline.model_store import build_model
from unlearn_pipeline.seed_study import SWEEP, cell_dir, cell_references, method_path
from unlearn_pipeline.stages import STUDY_THREADS, stage
from unlearn_pipeline.tracking import TrackedRun

log = logging.getLogger(__name__)

REPORT_KEYS = ("forget_acc", "retain_acc", "test_acc", "mia_rmia_auc", "avg_gap", "mia_svc", "avg_gap_svc",
               "mia_loss_auc", "runtime_vs_retrain")
GAP_KEYS = ("avg_gap", "avg_gap_svc")
CELL_SECTIONS = ("model", "train", "lipschitz", "data", "adversarial", "references.epochs", "sweep.references", "mia",
                 "execution.precision")


def _seeds(stage_name: str, seed: str, forget_seed: str) -> tuple[int, int]:
    if not (seed.isdigit() and forget_seed.isdigit()):
        raise ConfigError(f"{stage_name}: takes <seed> <forget_seed> as integers >= 0; got {seed!r} {forget_seed!r}")
    return int(seed), int(forget_seed)


@stage("sweep_cell", CELL_SECTIONS, untracked=("execution",), threads=STUDY_THREADS)
def sweep_cell(params: Params, run: TrackedRun, seed: str, forget_seed: str) -> None:
    """One cell's starting point: its split, original and retrained models, its reference
    models' logits, D_A and their metrics, in ``data/sweep/cells/seed<seed>-forget<forget_seed>/``.
    The trainings are checkpointed per epoch."""
    import torch

    seed_value, forget_value = _seeds("sweep_cell", seed, forget_seed)
    folder = cell_dir(seed_value, forget_value)
    cell = build_cell(params, run, seed_value, forget_value, folder)
    save_tensors(folder / "cell.pt", {
        "original": cell.original.state_dict(), "adversarial": vars(cell.task.adversarial),
        **{f"split.{name}": torch.as_tensor(idx) for name, idx in cell.splits.items()}})
    write_json(folder / "cell.json", {"seed": seed_value, "forget_seed": forget_value, "metrics": cell.metrics,
                                      "retrain_s": cell.retrain_s, "adversarial_s": cell.adversarial_s,
                                      "stats": cell.stats})
    run.log_metrics({f"{key}.{name}": float(value) for name, m in cell.metrics.items() for key, value in m.items()})


def _load_cell(params: Params, data, seed: int, forget_seed: int):
    """The cell stored by ``sweep_cell``, as :class:`unlearn.protocol.CellModels`."""
    import torch

    from unlearn.attacks import AdversarialSet
    from unlearn.protocol import CellModels
    from unlearn.unlearning import ForgetTask

    folder = cell_dir(seed, forget_seed)
    if not (folder / "cell.json").exists():
        raise DataError(f"{folder / 'cell.json'}: file not found; run `dvc repro studies/dvc.yaml` (sweep_cell stages)")
    info, blob = read_json(folder / "cell.json"), load_tensors(folder / "cell.pt")
    splits = {key.removeprefix("split."): value.numpy() for key, value in blob.items() if key.startswith("split.")}
    model = build_model(params, {**data.meta, **info["stats"]}, seed)  # the cell's own normalisation
    model.load_state_dict(blob["original"])
    task = ForgetTask(data.images, data.labels, torch.as_tensor(splits["forget"]), torch.as_tensor(splits["remain"]),
                      len(data.meta["classes"]), AdversarialSet(**blob["adversarial"]))
    references = cell_references(params, len(data.labels), seed, forget_seed)
    return CellModels(task, splits, model.eval(), info["retrain_s"], info["adversarial_s"], info["metrics"],
                      info["stats"], references, params.mia, seed)


@stage("sweep_method", ("unlearn.${item}", "sweep.lr_grid", "sweep.step_grid", "sweep.seeds", "sweep.forget_seeds",
                        "sweep.tuning_seed", "sweep.tuning_forget_seed", "sweep.select_by", "sweep.references", "mia",
                        "execution.precision"), threads=STUDY_THREADS)
def sweep_method(params: Params, run: TrackedRun, method: str) -> None:
    """One method of the study: its learning rate and (with ``sweep.step_grid``) StepLR
    step, the grid point with the smallest ``sweep.select_by`` on the tuning cell (a method
    without an lr grid keeps the rate of its ``unlearn`` section), then its metrics on every
    cell at that point, in ``data/sweep/methods/<method>.json``."""
    from unlearn.protocol import run_method

    sweep = params.sweep
    if method not in params.unlearn.methods:
        raise ConfigError(f"sweep_method: unknown method {method!r}; params.yaml's unlearn has "
                          f"{', '.join(params.unlearn.methods)}")
    data = load_prepared(stage_device(params))
    cfg = getattr(params.unlearn, method)
    tuning = _load_cell(params, data, sweep.tuning_seed, sweep.tuning_forget_seed)
    gaps, points = {}, {}
    for point in method_points(method, cfg, sweep.lr_grid, sweep.step_grid):
        label = point_label(point)
        with TrackedRun(f"sweep_method/{method}/{label}", {k: v for k, v in point.items() if k != "schedule"},
                        tags={"unlearn.job": "tune-point"}, parent=run.run_id) as tracked:
            metrics = run_method(tuning, method, cfg.model_copy(update=point), sweep.tuning_seed)
            tracked.log_metrics({k: float(v) for k, v in metrics.items()})
        gaps[label], points[label] = metrics[sweep.select_by], point
        log.info("%s, tuning cell, %s: %s %.4f", method, label, sweep.select_by, gaps[label])
    best = min(gaps, key=gaps.get)
    run.log_metrics({**({"best_lr": points[best]["lr"]} if "lr" in points[best] else {}),
                     f"best_{sweep.select_by}": gaps[best]})
    chosen = cfg.model_copy(update=points[best])
    cells = {}
    for seed in sweep.seeds:
        for forget_seed in sweep.forget_seeds:
            cell = _load_cell(params, data, seed, forget_seed)
            cells[cell_dir(seed, forget_seed).name] = run_method(cell, method, chosen, seed)
            log.info("%s, cell %s: avg_gap %.4f", method, cell_dir(seed, forget_seed).name,
                     cells[cell_dir(seed, forget_seed).name]["avg_gap"])
    write_json(method_path(method), {"lr": points[best].get("lr"), "step_size": getattr(chosen, "step_size", None),
                                     "schedule": getattr(chosen, "schedule", None), "select_by": sweep.select_by,
                                     "tuning_gap": {label: round(gap, 4) for label, gap in gaps.items()},
                                     "cells": cells})
    run.log_metrics({f"{key}.{name}": float(m[key]) for name, m in cells.items() for key in ("avg_gap", "avg_gap_svc")})


def method_points(method: str, cfg, lr_grids: dict[str, list[float]], step_grid: list[int]) -> list[dict]:
    """A method's tuning points (:func:`tuning_points` over its ``lr_grids`` entry, else its
    own rate); one empty point, its section as it is, for a method without a learning rate
    (SSD: training-free), which ``lr_grids`` must then not name."""
    if "lr" not in type(cfg).model_fields:
        if method in lr_grids:
            raise ConfigError(f"sweep.lr_grid.{method}: {method} has no learning rate (training-free); remove it")
        return [{}]
    return tuning_points(cfg, lr_grids.get(method, [cfg.lr]), step_grid)


def tuning_points(cfg, lr_grid: list[float], step_grid: list[int]) -> list[dict]:
    """The grid of a method's tuning: each rate of ``lr_grid``, and with ``step_grid`` each
    StepLR step (the schedule becomes ``step``; AMUN's official tuning searches the same
    grid for every method); without it the section's own schedule."""
    if not step_grid:
        return [{"lr": lr} for lr in lr_grid]
    return [{"lr": lr, "schedule": "step", "step_size": step} for lr in lr_grid for step in step_grid]


def point_label(point: dict) -> str:
    if "lr" not in point:
        return "as set"
    return f"lr={point['lr']:g}" + (f",step={point['step_size']}" if "step_size" in point else "")


def amun_of(remain_access: bool) -> str:
    """The AMUN a method is compared with: AMUN with remain access, or without it."""
    return "amun" if remain_access else "amun_no_remain"


@stage("sweep_report", ("sweep.seeds", "sweep.forget_seeds", "sweep.methods", "sweep.tuning_seed",
                        "sweep.tuning_forget_seed", "sweep.select_by"))
def sweep_report(params: Params, run: TrackedRun) -> None:
    """Mean, std and 95% interval over the cells of every model's metrics, and of each
    method's paired difference from the AMUN of its access group (per cell, the method's
    Avg Gap minus AMUN's): ``metrics/sweep.json`` and ``reports/sweep.md``."""
    from unlearn.protocol import aggregate, gaps

    sweep = params.sweep
    names = [cell_dir(s, f).name for s in sweep.seeds for f in sweep.forget_seeds]
    paths = [SWEEP / "cells" / name / "cell.json" for name in names] + [method_path(m) for m in sweep.methods]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"{missing[0]}: file not found; run `dvc repro studies/dvc.yaml`")
    bases = {name: read_json(SWEEP / "cells" / name / "cell.json")["metrics"] for name in names}
    methods = {m: read_json(method_path(m)) for m in sweep.methods}
    per_model = {"retrain": [{**bases[n]["retrain"], "avg_gap": 0.0, "avg_gap_svc": 0.0, "runtime_vs_retrain": 1.0}
                             for n in names],
                 "original": [{**bases[n]["original"], **gaps(bases[n]["original"], bases[n]["retrain"])}
                              for n in names],
                 **{m: [result["cells"][n] for n in names] for m, result in methods.items()}}
    summary = {name: {key: _rounded(aggregate([c[key] for c in cells])) for key in REPORT_KEYS if key in cells[0]}
               for name, cells in per_model.items()}
    differences = {}
    for name, cells in per_model.items():
        if name in ("retrain", "amun", "amun_no_remain") or name not in methods:
            continue
        reference = amun_of(cells[0]["remain_access"])
        if reference in per_model:
            differences[name] = {"from": reference, **{
                key: _rounded(aggregate([c[key] - r[key] for c, r in zip(cells, per_model[reference])]))
                for key in GAP_KEYS}}
    access = {name: cells[0].get("remain_access", True) for name, cells in per_model.items()}
    write_json(Path("metrics/sweep.json"), {"cells": len(names), "models": summary, "differences": differences,
                                            "remain_access": access, "select_by": sweep.select_by,
                                            "lr": {m: result["lr"] for m, result in methods.items()},
                                            "step_size": {m: result.get("step_size") for m, result in methods.items()
                                                          if result.get("schedule") == "step"}})
    write_text(REPORTS_DIR / "sweep.md", _sweep_markdown(params, names, summary, differences, methods))
    run.log_metrics({f"{key}.{name}": summary[name][key]["mean"] for name in per_model for key in GAP_KEYS})
    run.log_artifact(REPORTS_DIR / "sweep.md", "report")


def _recipe(result: dict) -> str:
    if result.get("lr") is None:
        return "- (no rate)"
    step = f" ({result['step_size']})" if result.get("schedule") == "step" else ""
    return f"{result['lr']:g}{step}"


def _rounded(summary: dict) -> dict:
    return {k: round(v, 4) for k, v in summary.items()}


def _sweep_markdown(params: Params, names: list[str], summary: dict, differences: dict, methods: dict) -> str:
    sweep = params.sweep

    def cell(stats: dict | None) -> str:
        return "-" if stats is None else f"{stats['mean']:.2f} ± {stats['ci95']:.2f}"

    header = ["model", "lr (StepLR step)", *REPORT_KEYS]
    rows = [[name, _recipe(methods[name]) if name in methods else "-",
             *(cell(summary[name].get(k)) for k in REPORT_KEYS)] for name in summary]
    diff_rows = [[name, d["from"], *(cell(d[k]) for k in GAP_KEYS)] for name, d in differences.items()]
    note = (f"Mean ± half-width of the 95% Student-t interval over {len(names)} cells (model seeds {sweep.seeds} x "
            f"forget-set seeds {sweep.forget_seeds}); each cell has its own split, original, retrained model and "
            f"{sweep.references} reference models. Accuracies, RMIA AUC (forget vs test), MIA-efficacy (SVC) and "
            f"loss-attack AUC in percent. Avg Gap: to the cell's retrained model over forget / retain / test "
            f"accuracy and RMIA AUC (the thesis's); Avg Gap (SVC): with MIA-efficacy instead. lr: the rate with the "
            f"smallest {sweep.select_by} on the tuning cell (seed {sweep.tuning_seed}, forget-set seed "
            f"{sweep.tuning_forget_seed}).")
    diff_note = ("Each method's Avg Gap minus that of the AMUN of its access group (`amun` with remain access, "
                 "`amun_no_remain` without), per cell, then mean ± 95% interval over cells: an interval above 0 "
                 "means AMUN's gap is smaller.")
    return (f"# Sweep over seeds\n\n{note}\n\n{markdown_table(header, rows)}\n\n## Difference from AMUN\n\n"
            f"{diff_note}\n\n{markdown_table(['model', 'AMUN', *GAP_KEYS], diff_rows)}\n")
