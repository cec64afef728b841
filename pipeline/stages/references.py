"""Stage ``references``: the reference models of RMIA and LiRA.

K models with the target's recipe (``model``, ``train``, ``lipschitz``; ``references.epochs``
may shorten it), each trained on a random half of the population (every sample of the
dataset, train and test), so that every sample is IN for exactly floor(K / 2) of them.
Each model's logits on every sample are saved (``data/references/logits_<k>.pt``), with
the keep matrix (``keep.npy``, K x N bool): scoring a model later costs one forward pass
of that model. The K trainings run as independent jobs through :mod:`unlearn.execution`
(``execution.workers``), one MLflow run each, nested under the stage's run.
"""

from __future__ import annotations

import numpy as np

from unlearn.config import Params
from unlearn.io import atomic_path, save_tensors
from unlearn_pipeline.common import (KEEP, device_tags, job_params, load_prepared, logits_path, remove_checkpoints,
                                     stage_device)
from unlearn_pipeline.fitting import train_model
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

def reference_seed(seed: int, k: int) -> int:
    """Weight-init and batch-order seed of reference model k (distinct from the target's)."""
    return 10_000 + 100 * seed + k


@stage("references", ("seed", "model", "train", "lipschitz", "references", "execution.precision"),
       untracked=("execution",))
def references(params: Params, run: TrackedRun) -> None:
    from unlearn.evaluation.suite import keep_matrix
    from unlearn.execution import Job, run_jobs

    cfg = params.references
    data = load_prepared()
    keep = keep_matrix(cfg.K, len(data.labels), params.seed)
    with atomic_path(KEEP) as tmp, open(tmp, "wb") as handle:
        np.save(handle, keep, allow_pickle=False)
    jobs = [Job(train_reference, {"k": k, "params_file": "params.yaml", "parent_run_id": run.run_id},
                name=f"reference {k}") for k in range(cfg.K)]
    run_jobs(jobs, workers=params.execution.workers, retries=params.execution.retries,
             address=params.execution.address)
    remove_checkpoints(*(f"reference {k}" for k in range(cfg.K)))
    run.log_metrics({"references": cfg.K, "in_per_sample": cfg.K // 2})


def train_reference(k: int, params_file: str, parent_run_id: str | None) -> str:
    """Job: train reference model ``k`` on its half of the population and save its logits."""
    from unlearn.config import load_params
    from unlearn.device import precision
    from unlearn.evaluation import predict

    params = job_params(load_params(params_file), k)
    recipe = params.train.model_copy(update={"epochs": params.references.epochs or params.train.epochs})
    setting = params.model_copy(update={"train": recipe})
    data = load_prepared(stage_device(params))
    keep = np.load(KEEP, allow_pickle=False)
    sections = {"references": params.references.model_dump(), "train": recipe.model_dump(), "reference": k}
    tags = {"unlearn.job": "references", "reference": str(k), **device_tags(params)}
    with TrackedRun(f"references/{k}", sections, tags=tags,
                    parent=parent_run_id) as run, precision(params.execution.precision):  # also in a worker process
        model, _ = train_model(f"reference {k}", setting, data, np.flatnonzero(keep[k]), run,
                               seed=reference_seed(params.seed, k))
        save_tensors(logits_path(k), {"logits": predict(model, data.images)})
    return str(logits_path(k))
