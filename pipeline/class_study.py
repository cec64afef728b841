"""Where the class study (``studies/dvc.yaml``, :mod:`unlearn_pipeline.stages.class_sweep`)
keeps its cells and methods, and how its per-cell results are read back (also by ``findings``)."""

from __future__ import annotations

from pathlib import Path

from unlearn.config import Params
from unlearn.errors import DataError
from unlearn.io import read_json

CLASS_SWEEP = Path("data/class_sweep")


def cell_dir(seed: int, forget_class: int) -> Path:
    return CLASS_SWEEP / "cells" / f"seed{seed}-class{forget_class}"


def method_path(method: str) -> Path:
    return CLASS_SWEEP / "methods" / f"{method}.json"


def class_cells(params: Params) -> dict[str, list[dict]]:
    """Every model's metrics per cell of the class study (retrain, original and each method),
    the cells in the order of ``class_sweep.seeds`` x ``class_sweep.classes``; the original's
    gaps to retrain added."""
    sweep = params.class_sweep
    names = [cell_dir(s, c).name for s in sweep.seeds for c in sweep.classes]
    paths = [CLASS_SWEEP / "cells" / n / "cell.json" for n in names] + [method_path(m) for m in sweep.methods]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"{missing[0]}: file not found; run `dvc repro studies/dvc.yaml`")
    bases = [read_json(CLASS_SWEEP / "cells" / n / "cell.json")["metrics"] for n in names]
    per_model = {"retrain": [b["retrain"] for b in bases], "original": [b["original"] for b in bases],
                 **{m: [read_json(method_path(m))["cells"][n] for n in names] for m in sweep.methods}}
    for original, base in zip(per_model["original"], bases):
        original["mia_nn_gap"] = abs(original["mia_nn"] - base["retrain"]["mia_nn"])
        if "ulira_auc" in original:
            original["ulira_gap"] = abs(original["ulira_auc"] - base["retrain"]["ulira_auc"])
    return per_model


def class_variants(params: Params) -> list[str]:
    """The study's TRW variants (``trw_<name>``): reported beside F6's subject ``trw``, never
    counted among the prior methods."""
    return [m for m in params.class_sweep.methods if m.startswith("trw_")]
