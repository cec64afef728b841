"""MLflow tracking: one run per stage execution, nested under the flow's run.

The tracking store defaults to ``sqlite:///mlflow.db`` in the project root and is
overridden by ``MLFLOW_TRACKING_URI``. Runs carry the DVC stage name, the git
commit and whether the tree was dirty, the package versions and the input data's
hash, the process that ran them (host:pid), the stage's params, its metrics and its
artifacts. Tracking never stops a stage: if
the store is unreachable, the stage still writes its outputs and the first failure
is reported on stderr, with what was not logged.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

EXPERIMENT = "unlearn"
PARENT_RUN_ENV = "UNLEARN_PARENT_RUN_ID"


def tracking_uri(root: Path = Path(".")) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def git_state(root: Path = Path(".")) -> dict[str, str]:
    """``git.commit`` and ``git.dirty`` of the working tree (``unknown`` outside git)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git.commit": commit or "unknown", "git.dirty": "unknown" if status is None else str(bool(status)).lower()}


PACKAGES = ("unlearn", "torch", "torchvision", "numpy", "scikit-learn", "dvc", "mlflow", "prefect", "dask")
PREPARED_META = Path("data/prepared/meta.json")


def provenance(root: Path = Path(".")) -> dict[str, str]:
    """What a result depends on beyond its params: ``python``, ``version.<package>`` for the
    packages the pipeline uses, and ``data.sha256`` (the prepared images' hash, once
    ``prepare`` has run in ``root``)."""
    import json
    import platform
    from importlib import metadata

    tags = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"version.{package}"] = "not installed"
    try:
        tags["data.sha256"] = json.loads((root / PREPARED_META).read_text())["sha256"]["images.pt"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # before prepare: no input data yet
    return tags


def flatten(section: str, value: Any) -> dict[str, Any]:
    """Nested params -> ``{"train.lr": 0.05, ...}``."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(f"{section}.{key}", sub))
        return out
    return {section: value}


def _artifact_location(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlruns").resolve().as_uri()
    return None


class TrackedRun:
    """An MLflow run (a stage execution, or a flow execution); every call is failure-tolerant.

    Use as a context manager; the run ends FINISHED, KILLED on Ctrl-C or SIGTERM, or FAILED
    if the body raised.
    A run is nested under ``parent`` (a run id), else under ``UNLEARN_PARENT_RUN_ID`` when
    set; one started while another is active in this process (a job run in the stage's
    own process) is nested under it.
    """

    def __init__(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                 parent: str | None = None) -> None:
        self.name = name
        self.parent = parent
        self.params = params
        self.tags = dict(tags or {})
        self.uri = tracking_uri()
        self._mlflow = None
        self._run_id: str | None = None
        self.failed: str | None = None
        self.not_logged: list[str] = []

    def __enter__(self) -> "TrackedRun":
        try:
            self._start()
        except Exception as exc:  # tracking must never stop the stage
            self._fail("start the run", exc)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = ("FINISHED" if exc_type is None
                  else "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
        self._call("end the run", lambda: self._mlflow.end_run(status=status))
        if self.failed:
            log.warning("MLflow (%s): not logged for %s: %s. The outputs are written; "
                        "fix the tracking store and re-run to log it.",
                        self.uri, self.name, ", ".join(self.not_logged))

    def _start(self) -> None:
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(self.uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        if mlflow.get_experiment_by_name(name) is None:
            try:
                mlflow.create_experiment(name, artifact_location=_artifact_location(self.uri))
            except mlflow.exceptions.MlflowException:
                pass  # created concurrently by another stage
        mlflow.set_experiment(name)
        tags = {**git_state(), **provenance(), "unlearn.process": f"{socket.gethostname()}:{os.getpid()}",
                **self.tags}
        tags["mlflow.source.git.commit"] = tags["git.commit"]
        parent = self.parent or os.environ.get(PARENT_RUN_ENV)
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = mlflow.start_run(run_name=self.name, tags=tags, nested=mlflow.active_run() is not None)
        self._run_id = run.info.run_id
        flat: dict[str, Any] = {}
        for section, value in self.params.items():
            flat.update(flatten(section, value))
        if flat:
            mlflow.log_params(flat)

    def _call(self, what: str, fn) -> None:
        """Run one MLflow call; after the first failure (or a failed start), only record what was skipped."""
        if self.failed:
            self.not_logged.append(what)
            return
        try:
            fn()
        except Exception as exc:  # tracking must never stop the stage
            self._fail(what, exc)

    def _fail(self, what: str, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.not_logged.append(what)
        log.warning("MLflow (%s) failed to %s: %s", self.uri, what, self.failed)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._call(f"metrics{'' if step is None else f' (step {step})'}",
                   lambda: self._mlflow.log_metrics(dict(metrics), step=step))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call(f"artifact {path}", lambda: self._mlflow.log_artifact(str(path), artifact_path))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._call("tags", lambda: self._mlflow.set_tags(dict(tags)))

    @property
    def run_id(self) -> str | None:
        return self._run_id
