"""Stage ``ulira_shadows``: U-LiRA's shadow models of both tracks (:mod:`unlearn_pipeline.ulira`),
trained as independent jobs through :mod:`unlearn.execution`."""

from __future__ import annotations

from unlearn.config import Params
from unlearn.io import save_tensors
from unlearn_pipeline.common import device_tags, job_params, load_prepared, remove_checkpoints, stage_device
from unlearn_pipeline.fitting import train_model
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun
from unlearn_pipeline.ulira import SHADOWS, TRACKS, candidates_of, shadow_path, shadow_seed

KINDS = ("original", "retrain")


@stage("ulira_shadows", ("seed", "model", "train", "lipschitz", "class_track.forget_class", "ulira.shadows",
                         "execution.precision"), untracked=("execution",))
def ulira_shadows(params: Params, run: TrackedRun) -> None:
    """Per track and shadow s < ``ulira.shadows``: an ``original`` shadow (the ``train`` recipe
    on the track's remain set plus its half of the candidates; weights and candidate
    logits) and a ``retrain`` shadow (the remain set alone; candidate logits)."""
    from unlearn.execution import Job, run_jobs

    jobs = [Job(train_shadow, {"track": track, "kind": kind, "s": s, "params_file": "params.yaml",
                               "parent_run_id": run.run_id}, name=f"shadow {track} {kind} {s}")
            for track in TRACKS for kind in KINDS for s in range(params.ulira.shadows)]
    run_jobs(jobs, workers=params.execution.workers, retries=params.execution.retries,
             address=params.execution.address)
    SHADOWS.mkdir(parents=True, exist_ok=True)  # the stage's output, also when ulira.shadows is 0
    remove_checkpoints(*(job.name for job in jobs))
    run.log_metrics({"shadows": params.ulira.shadows})


def train_shadow(track: str, kind: str, s: int, params_file: str, parent_run_id: str | None) -> str:
    """Job: train shadow ``s`` (``kind`` original or retrain) of ``track`` and save it."""
    import torch

    from unlearn.config import load_params
    from unlearn.device import precision
    from unlearn.evaluation import predict

    params = job_params(load_params(params_file), s)
    data = load_prepared(stage_device(params))
    found = candidates_of(track, data, params)
    indices = found.shadow_train(s) if kind == "original" else found.remain
    tags = {"unlearn.job": "ulira_shadows", "track": track, "kind": kind, "shadow": str(s), **device_tags(params)}
    with TrackedRun(f"ulira_shadows/{track}/{kind}/{s}", {"ulira": params.ulira.model_dump()}, tags=tags,
                    parent=parent_run_id) as run, precision(params.execution.precision):  # also in a worker process
        model, _ = train_model(f"shadow {track} {kind} {s}", params, data, indices, run,
                               seed=shadow_seed(params.seed, track, kind, s))
        blob = {"logits": predict(model, data.images[torch.as_tensor(found.indices)])}
        if kind == "original":
            blob["state"] = model.state_dict()
        save_tensors(shadow_path(track, kind, s), blob)
    return str(shadow_path(track, kind, s))
