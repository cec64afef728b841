"""The MLflow companion of a stage process (:func:`unlearn_pipeline.tracking.start_companion`):
``python -m unlearn_pipeline.mlflow_companion`` imports MLflow and its sqlite store while the
stage imports torch and works, then performs the stage's :class:`TrackedRun` calls, read as
JSON lines from stdin, in order, with real :class:`TrackedRun` objects (so failures are kept
for ``unlearn sync-mlflow`` exactly as in-process). It answers each ``enter`` with the run's
id and origin tags on stdout. It ignores SIGINT and SIGTERM (the stage closes its runs as
KILLED and then ends the companion); at end of input it ends any run still open as KILLED."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def _warm_up() -> None:
    """Import what the first run needs (MLflow, its sqlite store), touching no store."""
    import mlflow  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def serve(requests, replies) -> None:
    """Perform the operations read from ``requests`` (JSON lines); answer ``enter`` on ``replies``."""
    from unlearn_pipeline.tracking import TrackedRun

    runs: dict[str, TrackedRun] = {}
    for line in requests:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:  # the stage was interrupted while writing it
            log.warning("MLflow companion: skipped an unreadable operation: %.80s", line)
            continue
        op, key = message.pop("op"), message.pop("key", None)
        if op == "enter":
            run = TrackedRun(message["name"], message["params"], tags=message["tags"], parent=message["parent"],
                             origin=message["origin"]).__enter__()
            runs[key] = run
            replies.write(json.dumps({"key": key, "run_id": run.run_id, "origin": run.origin_tags}) + "\n")
            replies.flush()
        elif op == "metrics":
            runs[key].log_metrics(message["metrics"], step=message["step"])
        elif op == "artifact":
            runs[key].log_artifact(message["path"], message["artifact_path"], shown=message["shown"])
            Path(message["path"]).unlink(missing_ok=True)  # the stage's copy, made when it asked
        elif op == "model":
            _log_model(runs[key], message)
        elif op == "tags":
            runs[key].set_tags(message["tags"])
        elif op == "exit":
            _end(runs.pop(key), message["status"])
    for run in reversed(list(runs.values())):  # the stage died without closing them
        _end(run, "KILLED")


def _log_model(run, message: dict) -> None:
    import numpy
    import torch

    files = [Path(message["file"]), Path(message["input_example"])]
    try:
        model = torch.load(files[0], weights_only=False)  # written by the stage process a moment ago
        run.log_model(model, message["registered_name"], numpy.load(files[1]), tags=message["tags"])
    except Exception as error:  # an unreadable file: the other operations still go through
        log.warning("MLflow: model %s not logged (%s)", message["registered_name"], error)
    finally:
        for path in files:
            path.unlink(missing_ok=True)


def _end(run, status: str) -> None:
    error = {"FINISHED": None, "KILLED": KeyboardInterrupt, "FAILED": Exception}[status]
    run.__exit__(error, None, None)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever MLflow prints goes to stderr, never into the answers
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _warm_up()
    serve(sys.stdin, replies)
    replies.flush()
    logging.shutdown()
    os._exit(0)  # skip interpreter teardown (MLflow's atexit hooks): every run is closed


if __name__ == "__main__":
    main()
