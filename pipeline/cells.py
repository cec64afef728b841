"""A study cell's models, shared by the studies' stages (``sweep_cell``, ``smoothness``):
its reference models as executor jobs, then its original, retrained model and D_A.

A cell is trained in ``params``'s own regime or, for the smoothness studies, at a
Lipschitz target with BatchNorm removed (:func:`smooth_params`)."""

from __future__ import annotations

from pathlib import Path

from unlearn.config import Params
from unlearn.io import load_tensors, save_tensors
from unlearn_pipeline.common import (checkpoint_path, device_tags, job_params, load_prepared, remove_checkpoints,
                                     stage_device)
from unlearn_pipeline.fitting import train_model, training_fingerprint
from unlearn_pipeline.tracking import TrackedRun

DEFAULT_REGIME = "params"  # a cell trained with params.yaml's own model, train and lipschitz settings


def _cell_model(folder: Path, name: str) -> str:
    """A cell's model's name (``sweep cells seed0-forget0 original``), for its checkpoint and
    MLflow run: unique across the studies' cells."""
    return " ".join([*folder.parts[1:], name])


def build_cell(params: Params, run: TrackedRun, seed: int, forget_seed: int, folder: Path,
               target: float | str | None = DEFAULT_REGIME):
    """A cell (:func:`unlearn.protocol.prepare_cell`) in ``params``'s own regime, or, with a
    Lipschitz ``target`` (``None``: no clipping), in the smoothness study's
    (:func:`smooth_params`). Its ``sweep.references`` reference models are trained first,
    as executor jobs, into ``folder/references``."""
    from unlearn.checkpoint import EpochCheckpoint
    from unlearn.protocol import prepare_cell

    device = stage_device(params)
    data = load_prepared(device)
    setting = params if target == DEFAULT_REGIME else smooth_params(params, target)
    references = train_cell_references(params, run, folder, seed, forget_seed, target, len(data.labels))

    def checkpoint(name: str, indices) -> EpochCheckpoint:
        name = _cell_model(folder, name)
        return EpochCheckpoint(checkpoint_path(name), training_fingerprint(name, setting, data, indices, seed),
                               params.execution.checkpoint_every)

    cell = prepare_cell(data.images, data.labels, data.meta.get("test_start"), setting, seed, forget_seed,
                        checkpoint, device, references)
    remove_checkpoints(*(_cell_model(folder, name) for name in ("original", "retrain")))
    return cell


def smooth_params(params: Params, target: float | None) -> Params:
    """``params`` for a smooth-model study at Lipschitz ``target`` (``None``: no clipping):
    BatchNorm removed, FastClip with ``bn: remove``, so that the model's Lipschitz bound is
    the product of its clipped layers (and the fixed input normalisation)."""
    model = params.model.model_copy(update={"batch_norm": False})
    clip = params.lipschitz.model_copy(update={"method": "none"} if target is None else
                                       {"method": "fastclip", "target": target, "bn": "remove"})
    return params.model_copy(update={"model": model, "lipschitz": clip})


def train_cell_references(params: Params, run: TrackedRun, folder: Path, seed: int, forget_seed: int,
                          target: float | str | None, samples: int):
    """The cell's ``sweep.references`` reference models, each trained (as an executor job,
    ``execution.workers``) on a random half of all samples drawn from the cell's seeds:
    their logits, as :class:`unlearn.protocol.References`."""
    import torch

    from unlearn.execution import Job, run_jobs
    from unlearn.protocol import References

    count = params.sweep.references
    jobs = [Job(train_cell_reference, {"folder": str(folder), "k": k, "seed": seed, "forget_seed": forget_seed,
                                       "target": target, "params_file": "params.yaml", "parent_run_id": run.run_id},
                name=f"{folder.name} reference {k}") for k in range(count)]
    paths = run_jobs(jobs, workers=params.execution.workers, retries=params.execution.retries,
                     address=params.execution.address)
    remove_checkpoints(*(_cell_model(folder, f"reference {k}") for k in range(count)))
    logits = torch.stack([load_tensors(Path(path))["logits"] for path in paths])
    return References(cell_keep(count, samples, seed, forget_seed, target), logits)


def cell_keep(count: int, samples: int, seed: int, forget_seed: int, target: float | str | None):
    """The cell's keep matrix (count, samples): drawn from its seeds and its regime."""
    import zlib

    from unlearn.evaluation.suite import keep_matrix

    return keep_matrix(count, samples, (seed, forget_seed, zlib.crc32(str(target).encode())))


def train_cell_reference(folder: str, k: int, seed: int, forget_seed: int, target: float | str | None,
                         params_file: str, parent_run_id: str | None) -> str:
    """Job: reference model ``k`` of the cell in ``folder``; its logits on every sample
    go to ``folder/references/logits_<k>.pt`` (the path is returned)."""
    import numpy as np

    from unlearn.config import load_params
    from unlearn.device import precision
    from unlearn.evaluation import predict

    params = job_params(load_params(params_file), k)
    setting = params if target == DEFAULT_REGIME else smooth_params(params, target)
    recipe = setting.train.model_copy(update={"epochs": params.references.epochs or params.train.epochs})
    setting = setting.model_copy(update={"train": recipe})
    data = load_prepared(stage_device(params))
    keep = cell_keep(params.sweep.references, len(data.labels), seed, forget_seed, target)
    name = _cell_model(Path(folder), f"reference {k}")
    path = Path(folder) / "references" / f"logits_{k}.pt"
    tags = {"unlearn.job": "references", "reference": str(k), **device_tags(params)}
    with TrackedRun(name, {"train": recipe.model_dump(), "reference": k}, tags=tags,
                    parent=parent_run_id) as run, precision(params.execution.precision):
        entropy = np.random.SeedSequence([seed, forget_seed, k]).generate_state(1)[0]
        model, _ = train_model(name, setting, data, np.flatnonzero(keep[k]), run, seed=int(entropy) % 2**31)
        save_tensors(path, {"logits": predict(model, data.images)})
    return str(path)


def target_label(target: float | None) -> str:
    """``none`` (no clipping) or ``L<target>``: how reports and folders name a Lipschitz target."""
    return "none" if target is None else f"L{target:g}"
