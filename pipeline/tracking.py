"""MLflow tracking: one run per stage execution, nested under the flow's run.

The tracking store defaults to ``sqlite:///mlflow.db`` in the project root and is
overridden by ``MLFLOW_TRACKING_URI``. Runs carry the DVC stage name, the git
commit and whether the tree was dirty, the package versions and the input data's
hash, the process that ran them (host:pid), the stage's params, its metrics and its
artifacts. A companion process does the logging (:class:`TrackedRun`), so that MLflow's
import and store (~3 s) overlap the stage's work. Tracking never stops a stage: if
the store is unreachable or locked, the stage still writes its outputs, the first
failure is reported on stderr with what was not logged, and what was not logged is
kept in ``.unlearn/mlflow-pending`` (with copies of its artifacts) until
``unlearn sync-mlflow`` logs it (:mod:`pipeline.mlflow_sync`).

The experiment carries ``mlflow.experimentKind: custom_model_development``, so that MLflow 3's
UI opens it in the model-training view rather than the GenAI one. Models are logged as MLflow
PyTorch models and registered (:meth:`TrackedRun.log_model`). Every run is tagged
``unlearn.execution``, shared by all the runs of one pipeline execution (one ``dvc repro`` or
one ``unlearn run``, see :func:`execution_id`): in the UI's runs table, "Group by" -> tag
``unlearn.execution`` shows the stages of each execution together.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
import shutil
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import numpy
    import torch

log = logging.getLogger(__name__)

EXPERIMENT = "unlearn"
PARENT_RUN_ENV = "UNLEARN_PARENT_RUN_ID"
EXECUTION_ENV = "UNLEARN_EXECUTION"  # set by the Prefect flow: the id of its execution
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3 UI: model training, not GenAI
PENDING = Path(".unlearn/mlflow-pending")  # one folder per run with something not logged


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


def experiment_id(client, uri: str) -> str:
    """The id of the project's experiment in ``client``'s store, created on first use; it carries
    :data:`EXPERIMENT_KIND` (added to an existing experiment that lacks it)."""
    from mlflow.exceptions import MlflowException

    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(uri), tags=EXPERIMENT_KIND)
        except MlflowException:  # created concurrently by another stage
            found = client.get_experiment_by_name(name)
    for key, value in EXPERIMENT_KIND.items():
        if key not in found.tags:
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def execution_id() -> str:
    """The pipeline execution this process belongs to (the tag ``unlearn.execution``).

    ``UNLEARN_EXECUTION`` when set (the Prefect flow sets it for its stages); else, for a stage
    that ``dvc repro`` started (through a shell), ``dvc-<pid>-<start time>`` of the nearest
    ancestor process that is ``dvc``; else ``<host>-<pid>-<ms>`` of this process alone. The
    derived value is computed once per process (a few ms) and is stable within it.
    """
    return os.environ.get(EXECUTION_ENV) or _derived_execution()


def _is_dvc(cmdline: list[str]) -> bool:
    """``dvc ...``, ``python .../bin/dvc ...`` or ``python -m dvc ...``."""
    return any(Path(arg).name in ("dvc", "dvc.exe") for arg in cmdline[:2]) or cmdline[1:3] == ["-m", "dvc"]


@functools.cache
def _derived_execution() -> str:
    with contextlib.suppress(Exception):  # no psutil, or the tree changed under us: a lone run
        import psutil

        process = psutil.Process(os.getppid())
        for _ in range(64):  # the depth of any real process tree
            with contextlib.suppress(psutil.Error):
                if _is_dvc(process.cmdline()):
                    return f"dvc-{process.pid}-{int(process.create_time())}"
            process = process.parent()
            if process is None or process.pid <= 1:
                break
    return f"{socket.gethostname()}-{os.getpid()}-{_now_ms()}"


@functools.cache
def _model_requirements() -> tuple[str, ...]:
    """What loading a logged model needs, pinned to the installed versions (given to MLflow so
    that it does not infer them in a subprocess)."""
    from importlib import metadata

    pins = []
    for package in ("torch", "cloudpickle", "unlearn"):
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return tuple(pins)


def _not_the_pickle_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Saving pytorch model by Pickle")


def log_pytorch_model(model: torch.nn.Module, registered_name: str, input_example: numpy.ndarray,
                      run_id: str) -> None:
    """Log ``model`` to run ``run_id`` as the MLflow PyTorch model ``model``, with
    ``input_example`` (its signature is inferred from it), as a new version of the registered
    model ``registered_name``. It is pickled (MLflow's ``pickle`` format): its default ``pt2``
    export fixes the batch size to the example's and loads back as a graph, not the module.
    The model runs the example in eval mode; its mode is restored after."""
    import mlflow.pytorch

    pytorch_logger = logging.getLogger("mlflow.pytorch")  # the format is chosen, not a mistake
    if _not_the_pickle_warning not in pytorch_logger.filters:
        pytorch_logger.addFilter(_not_the_pickle_warning)
    training = model.training
    model.eval()
    try:
        mlflow.pytorch.log_model(model, name="model", input_example=input_example,
                                 registered_model_name=registered_name, run_id=run_id,
                                 pip_requirements=list(_model_requirements()), serialization_format="pickle")
    finally:
        model.train(training)


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Companion:
    """The process that talks to MLflow for one run (:func:`unlearn_pipeline.mlflow_sync.serve`).

    Importing MLflow and opening its store cost ~3 s a process; in a companion process that
    time overlaps the stage's own (torch's import, its work) instead of adding to it. Sends
    are queued (a thread writes them), so the stage never waits on MLflow; replies (the run
    id, the count of operations logged) are read by another thread."""

    def __init__(self, start: dict[str, Any]) -> None:
        self.run_id: str | None = None
        self.logged = 0
        self.error: str | None = None
        self.done = False
        self._changed = threading.Condition()
        self._outbox: queue.Queue = queue.Queue()
        self._process = subprocess.Popen([sys.executable, "-m", "unlearn_pipeline.mlflow_sync", "--serve"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._write, daemon=True).start()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send(start)

    def send(self, op: dict[str, Any]) -> None:
        self._outbox.put(op)

    def _write(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # the companion is gone: finish() finds out
            while (op := self._outbox.get()) is not None:
                self._process.stdin.write(json.dumps(op) + "\n")
                self._process.stdin.flush()
        with contextlib.suppress(OSError, ValueError):
            self._process.stdin.close()

    def _read(self) -> None:
        for line in self._process.stdout:
            with contextlib.suppress(ValueError), self._changed:
                reply = json.loads(line)
                self.run_id = reply.get("run_id", self.run_id)
                self.logged = reply.get("logged", self.logged)
                self.error = reply.get("failed", self.error)
                self._changed.notify_all()
        with self._changed:
            self.done = True
            self._changed.notify_all()

    def wait_until(self, condition) -> None:
        """Until ``condition()`` holds, or the companion failed or ended."""
        with self._changed:
            self._changed.wait_for(lambda: condition() or self.error is not None or self.done)

    def finish(self) -> None:
        """Close its input (after what was sent) and wait for it to log everything and end."""
        self._outbox.put(None)
        self._reader.join()
        self._process.wait()
        if self.error is None and self._process.returncode != 0:
            self.error = f"the tracking process exited with status {self._process.returncode}"


class TrackedRun:
    """An MLflow run (a stage execution, or a flow execution); every call is failure-tolerant.

    Use as a context manager; the run ends FINISHED, KILLED on Ctrl-C or SIGTERM, or FAILED
    if the body raised. A run is nested under ``parent`` (a run id), else under
    ``UNLEARN_PARENT_RUN_ID`` when set.

    The calls are sent to a companion process (:class:`_Companion`) and return at once;
    leaving the context waits until all of them are logged. If the store fails, what was
    not logged from then on is journaled for ``unlearn sync-mlflow``.
    """

    def __init__(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                 parent: str | None = None) -> None:
        self.name = name
        self.parent = parent
        self.params = params
        self.tags = dict(tags or {})
        self.uri = tracking_uri()
        self.failed: str | None = None
        self.not_logged: list[str] = []
        self._sent: list[tuple[str, dict[str, Any]]] = []  # (what, operation) after the start, in order
        self._companion: _Companion | None = None
        self._scratch: Path | None = None  # copies of the artifacts and models sent
        self._journal: Path | None = None

    def __enter__(self) -> "TrackedRun":
        self._start_time = _now_ms()
        self._all_tags = {**git_state(), **provenance(),
                          "unlearn.process": f"{socket.gethostname()}:{os.getpid()}",
                          "unlearn.execution": execution_id(), **self.tags}
        self._all_tags["mlflow.source.git.commit"] = self._all_tags["git.commit"]
        parent = self.parent or os.environ.get(PARENT_RUN_ENV)
        if parent:
            self._all_tags["mlflow.parentRunId"] = parent
        self._flat_params: dict[str, Any] = {}
        for section, value in self.params.items():
            self._flat_params.update(flatten(section, value))
        try:
            self._companion = _Companion({
                "uri": self.uri, "name": self.name, "start_time": self._start_time, "tags": self._all_tags,
                "params": {key: str(value) for key, value in self._flat_params.items()}})
        except OSError as exc:  # tracking must never stop the stage
            self.failed = f"{type(exc).__name__}: {exc}"
            return self
        if self.uri.startswith("sqlite:///") and not Path(self.uri.removeprefix("sqlite:///")).exists():
            self.flush()  # the first run creates the store's tables: runs started alongside must not race it
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = ("FINISHED" if exc_type is None
                  else "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
        self._send("end the run", {"op": "end", "status": status, "timestamp": _now_ms()})
        logged = 0
        if self._companion is not None:
            self._companion.finish()
            logged, self.failed = self._companion.logged, self._companion.error
        try:
            if self.failed:
                self._journal_the_rest(logged)
        finally:
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)

    def _send(self, what: str, op: dict[str, Any]) -> None:
        self._sent.append((what, op))
        if self._companion is not None:
            self._companion.send(op)

    def _journal_the_rest(self, logged: int) -> None:
        """Journal every operation the companion did not log (``logged`` counts the start)."""
        log.warning("MLflow (%s) failed: %s", self.uri, self.failed)
        rest = self._sent[max(logged - 1, 0):]
        self.not_logged = ["start the run"] * (logged == 0) + [what for what, _ in rest]
        try:
            ops = [{"op": "start"}] * (logged == 0) + [self._journaled(op) for _, op in rest]
            self._write_journal(ops)
            kept = f"what was not logged is kept in {self._journal}: run `unlearn sync-mlflow` when the store works"
        except OSError as error:
            kept = f"it could not be kept for `unlearn sync-mlflow` either ({error})"
        log.warning("MLflow (%s): not logged for %s: %s. The outputs are written; %s.",
                    self.uri, self.name, ", ".join(self.not_logged), kept)

    def _journaled(self, op: dict[str, Any]) -> dict[str, Any]:
        """``op`` with its files copied into the journal's folder (paths relative to it)."""
        if op["op"] not in ("artifact", "model"):
            return op
        folder = self._pending_dir() / "artifacts" / str(len(list((self._pending_dir() / "artifacts").iterdir())))
        folder.mkdir()
        kept = dict(op)
        for key in ("file", "input_example"):
            if key in op:
                shutil.copyfile(op[key], folder / Path(op[key]).name)
                kept[key] = f"artifacts/{folder.name}/{Path(op[key]).name}"
        return kept

    def _pending_dir(self) -> Path:
        if self._journal is None:
            self._journal = PENDING / f"{self._start_time}-{socket.gethostname()}-{os.getpid()}-{id(self):x}"
            (self._journal / "artifacts").mkdir(parents=True, exist_ok=True)
        return self._journal

    def _write_journal(self, ops: list[dict[str, Any]]) -> None:
        """``<pending dir>/run.json``: the run's identity and every operation that was not logged."""
        from unlearn.io import write_json

        write_json(self._pending_dir() / "run.json", {
            "name": self.name, "run_id": self.run_id, "uri": self.uri, "start_time": self._start_time,
            "tags": self._all_tags, "params": {key: str(value) for key, value in self._flat_params.items()},
            "ops": ops})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._send(f"metrics{'' if step is None else f' (step {step})'}", {
            "op": "metrics", "metrics": {key: float(value) for key, value in metrics.items()}, "step": step,
            "timestamp": _now_ms()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log the file ``path`` under ``artifact_path``, as it is now (a copy is logged: the file
        may change or go once this returns)."""
        try:
            copy = self._scratch_dir() / str(len(self._sent)) / Path(path).name
            copy.parent.mkdir()
            shutil.copyfile(path, copy)
        except OSError as exc:
            log.warning("MLflow: artifact %s cannot be logged (%s)", path, exc)
            return
        self._send(f"artifact {path}", {"op": "artifact", "name": Path(path).name, "artifact_path": artifact_path,
                                        "file": str(copy)})

    def _scratch_dir(self) -> Path:
        """Where the files sent to the companion wait (removed when the run ends)."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="unlearn-tracking-"))
        return self._scratch

    def log_model(self, model: torch.nn.Module, registered_name: str, input_example: numpy.ndarray) -> None:
        """Log ``model`` (a ``torch.nn.Module``) as this run's MLflow PyTorch model ``model`` and
        register it as a new version of ``registered_name`` (:func:`log_pytorch_model`), with
        ``input_example`` (a numpy array, e.g. one input of shape (1, C, H, W)).

        The module is pickled whole (``torch.save``) as it is now, with the example, for the
        companion process (and, if it is not logged, for ``unlearn sync-mlflow``, which reloads
        it with ``weights_only=False``: the classes of the module must stay importable)."""
        import numpy
        import torch

        folder = self._scratch_dir() / str(len(self._sent))
        try:
            folder.mkdir()
            on_cpu = all(p.device.type == "cpu" for p in model.parameters())
            torch.save(model if on_cpu else copy.deepcopy(model).cpu(), folder / "model.pt")  # loadable anywhere
            numpy.save(folder / "input_example.npy", numpy.asarray(input_example))
        except Exception as exc:  # OSError, or a module that cannot be pickled
            log.warning("MLflow: model %s cannot be logged (%s)", registered_name, exc)
            return
        self._send(f"model {registered_name}", {"op": "model", "registered_name": registered_name,
                                                "file": str(folder / "model.pt"),
                                                "input_example": str(folder / "input_example.npy")})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._send("tags", {"op": "tags", "tags": dict(tags)})

    def flush(self) -> None:
        """Wait until everything sent so far is logged (or the store failed)."""
        if self._companion is not None:
            self._companion.wait_until(lambda: self._companion.logged > len(self._sent))

    @property
    def run_id(self) -> str | None:
        """The MLflow run id (waits for the run to be created); None if it could not be."""
        if self._companion is None:
            return None
        self._companion.wait_until(lambda: self._companion.run_id is not None)
        return self._companion.run_id
