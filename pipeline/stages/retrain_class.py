"""Stage ``retrain_class``: the class track's gold standard, ``class_track.retrain_seeds``
models trained from scratch without the forgotten class (jobs through :mod:`unlearn.execution`)."""

from __future__ import annotations

from unlearn.config import Params
from unlearn.io import save_tensors, write_json
from unlearn_pipeline.class_track import class_split, retrain_name, retrain_seed
from unlearn_pipeline.common import (device_tags, job_params, load_prepared, model_path, remove_checkpoints,
                                     runtime_path, stage_device)
from unlearn_pipeline.fitting import train_model
from unlearn_pipeline.model_store import input_example
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun


@stage("retrain_class", ("seed", "model", "train", "lipschitz", "class_track", "execution.precision"),
       untracked=("execution",))
def retrain_class(params: Params, run: TrackedRun) -> None:
    """The gold standard of the class track: ``retrain_seeds`` models trained from scratch
    (the ``train`` recipe) on every train sample outside the forgotten class."""
    from unlearn.execution import Job, run_jobs

    seeds = params.class_track.retrain_seeds
    jobs = [Job(train_class_retrain, {"k": k, "params_file": "params.yaml", "parent_run_id": run.run_id},
                name=f"retrain_class {k}") for k in range(seeds)]
    seconds = run_jobs(jobs, workers=params.execution.workers, retries=params.execution.retries,
                       address=params.execution.address)
    remove_checkpoints(*(f"retrain_class {k}" for k in range(seeds)))
    mean = sum(seconds) / len(seconds)
    write_json(runtime_path("class/retrain"), {"runtime_s": round(mean, 3), "seeds": seeds})
    run.log_metrics({"runtime_s": mean, "seeds": seeds})


def train_class_retrain(k: int, params_file: str, parent_run_id: str | None) -> float:
    """Job: train retrained model ``k`` of the class track; returns its training seconds."""
    import time

    from unlearn.config import load_params
    from unlearn.device import precision
    from unlearn.training import resumed_seconds

    params = job_params(load_params(params_file), k)
    data = load_prepared(stage_device(params))
    split = class_split(data, params)
    sections = {"class_track": params.class_track.model_dump(), "train": params.train.model_dump(), "seed_index": k}
    tags = {"unlearn.job": "retrain_class", "seed_index": str(k), **device_tags(params)}
    with TrackedRun(f"retrain_class/{k}", sections, tags=tags,
                    parent=parent_run_id) as run, precision(params.execution.precision):  # also in a worker process
        start = time.perf_counter()
        model, history = train_model(f"retrain_class {k}", params, data, split["remain"], run,
                                     seed=retrain_seed(params.seed, k))
        seconds = time.perf_counter() - start + resumed_seconds(history)
        save_tensors(model_path(retrain_name(k)), model.state_dict())
        run.log_metrics({"runtime_s": seconds})
        run.log_model(model, "unlearn-class-retrain", input_example(data))  # one version per seed
    return seconds
