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

``python -m unlearn_pipeline.mlflow_sync --serve`` is the companion process that logs a
live run for :class:`unlearn_pipeline.tracking.TrackedRun` (:func:`serve`), with the same
operations.
"""

from __future__ import annotations

import json
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
    journal = read_json(folder / "run.json")
    run_id = journal["run_id"]
    for op in journal["ops"]:
        if op["op"] == "start":
            if run_id is None:
                run = client.create_run(experiment_id(client, uri), start_time=journal["start_time"],
                                        tags={**journal["tags"], "unlearn.synced": "true"},
                                        run_name=journal["name"])
                run_id = journal["run_id"] = run.info.run_id
                write_json(folder / "run.json", journal)  # a retry after a later failure must not create it twice
            else:
                client.set_tag(run_id, "unlearn.synced", "true")
            _log_params(client, run_id, journal["params"])
        elif op["op"] == "model":
            if not op.get("done"):
                apply(client, uri, run_id, op, folder)
                op["done"] = True
                write_json(folder / "run.json", journal)  # a retry must not register it twice
        else:
            apply(client, uri, run_id, op, folder)


def apply(client, uri: str, run_id: str, op: dict[str, Any], folder: Path) -> None:
    """Log one operation of a run (``metrics``, ``tags``, ``artifact``, ``model`` or ``end``, as
    :class:`unlearn_pipeline.tracking.TrackedRun` records them); its files are relative to
    ``folder`` (or absolute)."""
    from mlflow.entities import Metric, RunTag

    kind = op["op"]
    if kind == "metrics":
        client.log_batch(run_id, metrics=[Metric(key, value, op["timestamp"], op["step"] or 0)
                                          for key, value in op["metrics"].items()])
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in op["tags"].items()])
    elif kind == "artifact":
        client.log_artifact(run_id, str(folder / op["file"]), op["artifact_path"])
    elif kind == "model":
        _replay_model(client, uri, folder, run_id, op)
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
    log_pytorch_model(model, op["registered_name"], numpy.load(folder / op["input_example"]), run_id)


def _log_params(client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[start:start + _BATCH])


def serve() -> int:
    """The companion process of one :class:`~unlearn_pipeline.tracking.TrackedRun`
    (``python -m unlearn_pipeline.mlflow_sync --serve``): reads the run's start, then its
    operations, as JSON lines on stdin, logs each, and answers on stdout with the run id and
    the count of operations logged so far (``{"run_id": ..., "logged": 1}``, then
    ``{"logged": n}``), or ``{"failed": ..., "logged": n}`` at the first failure (it then
    reads on, so that the stage never blocks, and logs nothing more: the stage journals the
    rest for ``unlearn sync-mlflow``). Ctrl-C and SIGTERM are ignored: it ends when the stage
    closes stdin, after the run's end."""
    import signal
    import sys

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    replies, sys.stdout = sys.stdout, sys.stderr  # MLflow's own prints must not mix with the replies

    def reply(**message) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    lines = iter(sys.stdin)
    logged = 0
    try:
        start = json.loads(next(lines))
        from mlflow import MlflowClient

        client = MlflowClient(start["uri"])
        run = client.create_run(experiment_id(client, start["uri"]), start_time=start["start_time"],
                                tags=start["tags"], run_name=start["name"])
        run_id = run.info.run_id
        _log_params(client, run_id, start["params"])
        logged = 1
        reply(run_id=run_id, logged=logged)
        for line in lines:
            apply(client, start["uri"], run_id, json.loads(line), Path("."))
            logged += 1
            reply(logged=logged)
    except Exception as exc:  # reported to the stage, which journals what was not logged
        reply(failed=f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}", logged=logged)
        for _ in lines:
            pass
        return 1
    return 0


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


if __name__ == "__main__":
    import sys

    sys.exit(serve() if sys.argv[1:] == ["--serve"] else main())
