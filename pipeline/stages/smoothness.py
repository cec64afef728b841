"""Stage ``smoothness@<seed>`` (studies/dvc.yaml): smoothness vs AMUN's gap (finding F2).

For one model seed and each Lipschitz target of ``smoothness.targets``, a cell
(:func:`unlearn_pipeline.cells.build_cell`) at that target with BatchNorm removed: its
reference models, original and retrained model (each with its Lipschitz bound), D_A,
and each method of ``smoothness.methods`` (its ``unlearn`` section as is; with
``smoothness.clip_unlearning``, FastClip stays on at the target while it unlearns, as in the
official smooth-model runs), all scored with RMIA and each with its Lipschitz bound:
``data/smoothness/seed<seed>/results.json``."""

from __future__ import annotations

from pathlib import Path

from unlearn.config import Params
from unlearn.errors import ConfigError
from unlearn.io import write_json
from unlearn_pipeline.cells import build_cell, smooth_params, target_label
from unlearn_pipeline.stages import STUDY_THREADS, stage
from unlearn_pipeline.tracking import TrackedRun

SMOOTHNESS = Path("data/smoothness")


def results_path(seed: int) -> Path:
    return SMOOTHNESS / f"seed{seed}" / "results.json"


@stage("smoothness", ("model", "train", "lipschitz", "data", "adversarial", "references.epochs", "sweep.references",
                      "mia", "smoothness", "unlearn", "execution.precision"), untracked=("execution",),
       threads=STUDY_THREADS)
def smoothness(params: Params, run: TrackedRun, seed: str) -> None:
    """``{target label: {"target", "original", "retrain", <method>: metrics}}`` for one seed."""
    from unlearn.protocol import gaps, run_method

    if not seed.isdigit():
        raise ConfigError(f"smoothness: takes <seed> as an integer >= 0; got {seed!r}")
    seed_value, cfg = int(seed), params.smoothness
    results = {}
    for target in cfg.targets:
        label = target_label(target)
        clip = None if target is None or not cfg.clip_unlearning else smooth_params(params, target).lipschitz
        cell = build_cell(params, run, seed_value, cfg.forget_seed, results_path(seed_value).parent / label, target)
        original, retrain = cell.metrics["original"], cell.metrics["retrain"]
        results[label] = {"target": target, "original": {**original, **gaps(original, retrain)},
                          "retrain": {**retrain, "avg_gap": 0.0, "avg_gap_svc": 0.0},
                          **{m: run_method(cell, m, getattr(params.unlearn, m), seed_value, clip=clip, bound=True)
                             for m in cfg.methods}}
        run.log_metrics({f"{key}.{label}.{name}": float(metrics[key]) for name, metrics in results[label].items()
                         if isinstance(metrics, dict) for key in ("avg_gap", "lipschitz_bound") if key in metrics})
    write_json(results_path(seed_value), results)
