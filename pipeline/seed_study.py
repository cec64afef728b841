"""Where the seed study (``studies/dvc.yaml``, :mod:`unlearn_pipeline.stages.sweep`) and the
memorised-forget study (:mod:`unlearn_pipeline.stages.memorized_study`) keep their cells and
methods, and how they are read back (also by ``findings``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from unlearn.config import Params
from unlearn.errors import DataError
from unlearn.io import load_tensors, read_json
from unlearn_pipeline.cells import DEFAULT_REGIME, cell_keep

if TYPE_CHECKING:
    from unlearn.protocol import References

SWEEP = Path("data/sweep")
MEMORIZED = SWEEP / "memorized"
MEMORIZATION_SCORES = MEMORIZED / "scores.pt"


def cell_dir(seed: int, forget_seed: int) -> Path:
    return SWEEP / "cells" / f"seed{seed}-forget{forget_seed}"


def method_path(method: str) -> Path:
    return SWEEP / "methods" / f"{method}.json"


def level_path(level: str) -> Path:
    return MEMORIZED / f"{level}.json"


def read_study_file(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"{path}: file not found; run `dvc repro studies/dvc.yaml`")
    return read_json(path)


def cell_references(params: Params, samples: int, seed: int, forget_seed: int) -> References:
    """The ``sweep.references`` reference models' logits of the seed study's cell (``sweep_cell``),
    with its keep matrix: each model trained on a random half of all ``samples``."""
    import torch

    from unlearn.protocol import References

    count, folder = params.sweep.references, cell_dir(seed, forget_seed)
    paths = [folder / "references" / f"logits_{k}.pt" for k in range(count)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise DataError(f"{missing[0]}: file not found; run `dvc repro studies/dvc.yaml` (sweep_cell stages)")
    logits = torch.stack([load_tensors(path)["logits"] for path in paths])
    return References(cell_keep(count, samples, seed, forget_seed, DEFAULT_REGIME), logits)


def chosen_config(cfg, result: dict):
    """A method's ``cfg`` at the point its ``sweep_method`` stage chose (``result``: its
    ``data/sweep/methods/<method>.json``): the rate, and the StepLR step when it chose one."""
    update = {} if result.get("lr") is None else {"lr": result["lr"]}
    if result.get("schedule") == "step":
        update.update(schedule="step", step_size=result["step_size"])
    return cfg.model_copy(update=update)


def memorized_results(params: Params) -> tuple[dict[str, dict[str, list[dict]]], dict[str, float]]:
    """Per level of ``memorized_study.levels``, read once: every model's metrics per cell
    (``original`` and ``retrain`` with their gaps, each method; the cells in the same order),
    and the forget sets' mean memorisation score over the cells."""
    import numpy as np

    by_level, scores = {}, {}
    for level in params.memorized_study.levels:
        cells = read_study_file(level_path(level))["cells"]
        models = list(next(iter(cells.values()))["models"])
        by_level[level] = {m: [cell["models"][m] for cell in cells.values()] for m in models}
        scores[level] = round(float(np.mean([cell["forget_score_mean"] for cell in cells.values()])), 4)
    return by_level, scores
