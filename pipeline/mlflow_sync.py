"""``unlearn sync-mlflow``: log what a tracking fault left in ``.unlearn/mlflow-pending``.

Each pending folder holds ``run.json`` (the run's name, tags, params, and the operations
that were not logged, in order) and copies of its artifacts as they were when the stage
wrote them. A run whose start failed is created now, with its original start time; a
run that started but lost later calls gets the missing metrics, tags, artifacts, models
(kept whole in the folder; each is logged and registered once, even if a later operation
fails) and end status. Replayed runs carry the tag ``unlearn.synced``. A folder is removed
once its run is fully logged; the first failure stops the sync and leaves the rest for the
next try.
A run whose parent run was itself not logged is logged without its parent.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from unlearn_pipeline.tracking import PENDING, experiment_id, log_pytorch_model, tracking_uri
from unlearn.io import read_json, write_json

log = logging.getLogger(__name__)
_BATCH = 100  # MLflow's limit on params per log_batch call


def pending_runs(root: Path = Path(".")) -> list[Path]:
    """The pending run folders, oldest first."""
    folder = root / PENDING
    return sorted(path.parent for path in folder.glob("*/run.json")) if folder.is_dir() else []


def sync(root: Path = Path(".")) -> tuple[int, str | None]:
    """Log every pending run to the current tracking store; returns (runs logged, the error that stopped it)."""
    from mlflow import MlflowClient

    uri = tracking_uri(root)
    logged = 0
    for folder in pending_runs(root):
        try:
            _replay(MlflowClient(uri), uri, folder)
        except Exception as exc:
            return logged, f"{folder}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        shutil.rmtree(folder)
        logged += 1
    return logged, None


def _replay(client, uri: str, folder: Path) -> None:
    from mlflow.entities import Metric, RunTag

    journal = read_json(folder / "run.json")
    run_id = journal["run_id"]
    for op in journal["ops"]:
        kind = op["op"]
        if kind == "start":
            if run_id is None:
                run = client.create_run(experiment_id(client, uri), start_time=journal["start_time"],
                                        tags={**journal["tags"], "unlearn.synced": "true"},
                                        run_name=journal["name"])
                run_id = journal["run_id"] = run.info.run_id
                write_json(folder / "run.json", journal)  # a retry after a later failure must not create it twice
            else:
                client.set_tag(run_id, "unlearn.synced", "true")
            _log_params(client, run_id, journal["params"])
        elif kind == "metrics":
            client.log_batch(run_id, metrics=[Metric(key, value, op["timestamp"], op["step"] or 0)
                                              for key, value in op["metrics"].items()])
        elif kind == "tags":
            client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in op["tags"].items()])
        elif kind == "artifact":
            client.log_artifact(run_id, str(folder / op["file"]), op["artifact_path"])
        elif kind == "model":
            if not op.get("done"):
                _replay_model(client, uri, folder, run_id, op)
                op["done"] = True
                write_json(folder / "run.json", journal)  # a retry must not register it twice
        elif kind == "end":
            client.set_terminated(run_id, op["status"], end_time=op["timestamp"])
        else:
            raise ValueError(f"unknown operation {kind!r}")


def _replay_model(client, uri: str, folder: Path, run_id: str, op: dict[str, Any]) -> None:
    import mlflow
    import numpy
    import torch

    mlflow.set_tracking_uri(uri)  # mlflow.pytorch.log_model logs through the fluent API
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)  # where the model goes
    model = torch.load(folder / op["file"], weights_only=False)  # our own pickle, written by TrackedRun.log_model
    log_pytorch_model(model, op["registered_name"], numpy.load(folder / op["input_example"]), run_id,
                      op.get("tags"), op.get("description", ""))


def _log_params(client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[start:start + _BATCH])


def main(root: Path = Path(".")) -> int:
    """The command: 0 when nothing is left pending, 1 otherwise."""
    pending = pending_runs(root)
    if not pending:
        print("nothing to sync: no run is waiting in", root / PENDING)
        return 0
    logged, error = sync(root)
    print(f"logged {logged} of {len(pending)} pending run(s) to {tracking_uri(root)}")
    if error:
        print(f"error: MLflow still fails, {len(pending) - logged} run(s) stay pending: {error}")
        return 1
    return 0
