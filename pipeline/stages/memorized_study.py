"""The memorised-forget study (studies/dvc.yaml; F1-memorised, a question the thesis does not
ask): does AMUN's advantage hold when the forget set is hard (Zhao et al., "What makes
unlearning hard and what to do about it", 2024)?

``memorized_scores`` scores every sample of the dataset (:mod:`unlearn_pipeline.memorization`,
``memorization.references`` models of its own on seeded random halves of all samples):
``data/sweep/memorized/scores.pt``. ``memorized_level@<level>`` runs F1's protocol on the seed
study's cells (``memorized_study.seeds`` x ``sweep.forget_seeds``) with each cell's forget set
drawn from the ``level`` pool of its train set: the cell's original and retrained model, D_A,
and each method of ``memorized_study.methods`` at the rate its ``sweep_method`` stage chose;
the cell's RMIA / LiRA reference models are the seed study's (random halves of all samples,
so independent of the forget set): ``data/sweep/memorized/<level>.json``.
"""

from __future__ import annotations

import logging

from unlearn.config import MEMORIZATION_LEVELS, ForgetConfig, Params
from unlearn.errors import ConfigError, DataError
from unlearn.io import load_tensors, save_tensors, write_json
from unlearn_pipeline.common import load_prepared, stage_device
from unlearn_pipeline.seed_study import (MEMORIZATION_SCORES, cell_dir, cell_references, chosen_config, level_path,
                                         method_path, read_study_file)
from unlearn_pipeline.stages import STUDY_THREADS, stage
from unlearn_pipeline.tracking import TrackedRun

log = logging.getLogger(__name__)


@stage("memorized_scores", ("seed", "model", "train", "lipschitz", "memorization", "execution.precision"),
       untracked=("execution",), threads=STUDY_THREADS)
def memorized_scores(params: Params, run: TrackedRun) -> None:
    """Every sample's memorisation score, in dataset order."""
    import numpy as np
    import torch

    from unlearn.protocol import normalisation
    from unlearn_pipeline.memorization import train_scores

    device = stage_device(params)
    data = load_prepared(device)
    every = np.arange(len(data.labels))
    scores = train_scores(params, data.images, data.labels, len(data.meta["classes"]), every,
                          normalisation(data.images.cpu(), every), device)
    save_tensors(MEMORIZATION_SCORES, {"scores": torch.as_tensor(scores)})
    run.log_metrics({"score_mean": float(scores.mean()), "score_median": float(np.median(scores))})


@stage("memorized_level", ("model", "train", "lipschitz", "data", "adversarial", "sweep.forget_seeds",
                           "sweep.references", "mia", "memorized_study", "unlearn", "execution.precision"),
       untracked=("execution", "sweep.seeds", "sweep.methods"), threads=STUDY_THREADS)  # sweep.*: checked only
def memorized_level(params: Params, run: TrackedRun, level: str) -> None:
    """F1's cells at one memorisation ``level``: per cell, the forget set's scores and every
    model's metrics (the original's and each method's gaps to the cell's retrained model)."""
    import numpy as np

    from unlearn.protocol import gaps, prepare_cell, run_method

    if level not in MEMORIZATION_LEVELS:
        raise ConfigError(f"memorized_level: takes <level>, one of {', '.join(MEMORIZATION_LEVELS)}; got {level!r}")
    study = params.memorized_study
    for key, values, allowed in (("seeds", study.seeds, params.sweep.seeds),
                                 ("methods", study.methods, params.sweep.methods)):
        outside = [v for v in values if v not in allowed]
        if outside:
            raise ConfigError(f"params.yaml: memorized_study.{key} = {values}: {outside[0]!r} is not in sweep.{key} "
                              f"{allowed} (the study reuses the seed study's reference models and learning rates)")
    device = stage_device(params)
    data = load_prepared(device)
    scores = load_tensors(MEMORIZATION_SCORES)["scores"].numpy()
    if len(scores) != len(data.labels):
        raise DataError(f"{MEMORIZATION_SCORES}: scores {len(scores)} samples, the dataset has {len(data.labels)}; "
                        f"re-run `dvc repro studies/dvc.yaml`")
    setting = params.model_copy(update={"data": params.data.model_copy(update={"forget": memorized_forget(
        params.data.forget, level, study.pool)})})
    chosen = {m: chosen_config(getattr(params.unlearn, m), read_study_file(method_path(m))) for m in study.methods}
    cells = {}
    for seed in study.seeds:
        for forget_seed in params.sweep.forget_seeds:
            name = cell_dir(seed, forget_seed).name
            cell = prepare_cell(data.images, data.labels, data.meta.get("test_start"), setting, seed, forget_seed,
                                None, device, cell_references(params, len(data.labels), seed, forget_seed), scores)
            original, retrain = cell.metrics["original"], cell.metrics["retrain"]
            models = {"original": {**original, **gaps(original, retrain)},
                      "retrain": {**retrain, "avg_gap": 0.0, "avg_gap_svc": 0.0},
                      **{m: run_method(cell, m, cfg, seed) for m, cfg in chosen.items()}}
            forget_scores = scores[cell.splits["forget"]]
            cells[name] = {"forget": len(forget_scores), "forget_score_mean": round(float(forget_scores.mean()), 4),
                           "train_score_mean": round(float(scores[cell.splits["train"]].mean()), 4),
                           "models": models}
            log.info("%s memorisation, cell %s: forget score %.3f, avg_gap %s", level, name,
                     cells[name]["forget_score_mean"],
                     ", ".join(f"{m} {models[m]['avg_gap']:.2f}" for m in chosen))
    write_json(level_path(level), {"level": level, "pool": study.pool,
                                   "rates": {m: cfg.lr if hasattr(cfg, "lr") else None for m, cfg in chosen.items()},
                                   "cells": cells})
    run.log_metrics({f"avg_gap.{m}": float(np.mean([c["models"][m]["avg_gap"] for c in cells.values()]))
                     for m in ("original", *chosen)})


def memorized_forget(forget: ForgetConfig, level: str, pool: float) -> ForgetConfig:
    """``data.forget``'s size (``fraction`` or ``count``) drawn from the ``level`` pool."""
    return ForgetConfig(mode="memorized", fraction=forget.fraction, count=forget.count, level=level, pool=pool)
