"""``unlearn sync-mlflow``: log what a tracking fault left in ``.unlearn/mlflow-pending``.

Each pending folder holds ``run.json`` (the run's name, tags, params, and the operations
that were not logged, in order) and copies of its artifacts as they were when the stage
wrote them. A run whose start failed is created now, with its original start time; a
run that started but lost later calls gets the missing metrics, tags, artifacts and end
status. Replayed runs carry the tag ``unlearn.synced``. A folder is removed once its run
is fully logged; the first failure stops the sync and leaves the rest for the next try.
A run whose parent run was itself not logged is logged without its parent.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from pipeline.tracking import PENDING, experiment_id, tracking_uri
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
        elif kind == "end":
            client.set_terminated(run_id, op["status"], end_time=op["timestamp"])
        else:
            raise ValueError(f"unknown operation {kind!r}")


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
