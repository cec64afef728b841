"""MLflow tracking: one run per stage execution, nested under the flow's run.

The tracking store defaults to ``sqlite:///mlflow.db`` in the project root and is
overridden by ``MLFLOW_TRACKING_URI``. Runs carry the DVC stage name, the git
commit and whether the tree was dirty, the package versions and the input data's
hash, the process that ran them (host:pid), the stage's params, its metrics and its
artifacts. Tracking never stops a stage: if
the store is unreachable or locked, the stage still writes its outputs, the first
failure is reported on stderr with what was not logged, and what was not logged is
kept in ``.unlearn/mlflow-pending`` (with copies of its artifacts) until
``unlearn sync-mlflow`` logs it (:mod:`unlearn_pipeline.mlflow_sync`).

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
import hashlib
import json
import logging
import os
import shutil
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
COMPANION_ENV = "UNLEARN_MLFLOW_COMPANION"  # "0": a stage logs from its own process (no companion)
# The process that DVC started for this stage when a stage server runs it (not this process's parent).
launcher_pid: int | None = None


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

        process = psutil.Process(launcher_pid or os.getppid())
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
                      run_id: str, tags: Mapping[str, str] | None = None, description: str = "") -> None:
    """Log ``model`` to run ``run_id`` as the MLflow PyTorch model ``model``, with
    ``input_example`` (its signature is inferred from it), as a new version of the registered
    model ``registered_name`` carrying ``tags`` and ``description`` (the params that made it:
    versions made with different settings no longer look alike in the registry). It is
    pickled (MLflow's ``pickle`` format): its default ``pt2``
    export fixes the batch size to the example's and loads back as a graph, not the module.
    The model runs the example in eval mode; its mode is restored after."""
    import mlflow.pytorch

    pytorch_logger = logging.getLogger("mlflow.pytorch")  # the format is chosen, not a mistake
    if _not_the_pickle_warning not in pytorch_logger.filters:
        pytorch_logger.addFilter(_not_the_pickle_warning)
    training = model.training
    model.eval()
    try:
        with _installed_requirements_unchecked():
            info = mlflow.pytorch.log_model(model, name="model", input_example=input_example, run_id=run_id,
                                            pip_requirements=list(_model_requirements()),
                                            serialization_format="pickle")
    finally:
        model.train(training)
    version = mlflow.register_model(info.model_uri, registered_name, tags=dict(tags or {}))
    if description:
        mlflow.MlflowClient().update_model_version(registered_name, version.version, description=description)


@contextlib.contextmanager
def _installed_requirements_unchecked():
    """Skip MLflow's check of a model's pip requirements against the installed packages while
    logging (run when it writes the model and again when it loads it back to validate the
    input example): it first maps every installed distribution to its modules, 0.5 s on the
    CI machine (``benchmarks/bench_stage_overhead.py``), once in every stage process that logs
    a model. It cannot find anything here: the requirements are the installed versions
    themselves (:func:`_model_requirements`; MLflow pins its own version the same way). A module
    of an MLflow without the name is left alone."""
    import mlflow.pyfunc
    from mlflow.utils import environment

    name = "warn_dependency_requirement_mismatches"
    patched = [(module, getattr(module, name)) for module in (environment, mlflow.pyfunc) if hasattr(module, name)]
    for module, _ in patched:
        setattr(module, name, lambda requirements: None)
    try:
        yield
    finally:
        for module, check in patched:
            setattr(module, name, check)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Companion:
    """The MLflow companion of this process (:mod:`unlearn_pipeline.mlflow_companion`): a child
    that imports MLflow and its store while this process imports torch and works (about 3 s
    of every stage's start-up, measured by ``benchmarks/bench_stage_overhead.py``), then
    performs this process's :class:`TrackedRun` calls in order. Artifacts and models are
    copied into a spool folder when logged, so that the companion logs them as they were."""

    def __init__(self) -> None:
        self.owner = os.getpid()  # a spawned or forked worker logs from its own process
        self.spool = Path(tempfile.mkdtemp(prefix="unlearn-mlflow-"))
        self.process = subprocess.Popen([sys.executable, "-m", "unlearn_pipeline.mlflow_companion"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.replies: dict[str, dict] = {}
        self.answered = threading.Condition()
        self.files = 0
        self.broken = False
        # read every answer as it comes: unread answers would fill the pipe and stall the companion
        threading.Thread(target=self._read_answers, name="mlflow-companion-answers", daemon=True).start()

    def send(self, message: dict[str, Any]) -> bool:
        """Queue one operation; False when the companion is gone (what follows is not logged)."""
        if self.broken:
            return False
        try:
            self.process.stdin.write(json.dumps(message, default=str) + "\n")
            self.process.stdin.flush()
            return True
        except OSError as error:
            self.broken = True
            log.warning("MLflow: the logging companion (pid %d) ended early (%s); this stage's runs are not logged "
                        "from here on", self.process.pid, error)
            return False

    def _read_answers(self) -> None:
        for line in self.process.stdout:
            answer = json.loads(line)
            with self.answered:
                self.replies[answer.pop("key")] = answer
                self.answered.notify_all()
        with self.answered:  # the companion ended: nobody waits for an answer that cannot come
            self.broken = True
            self.answered.notify_all()

    def reply(self, key: str) -> dict[str, Any]:
        """The companion's answer to ``enter`` ``key``: ``run_id`` and ``origin`` (waits for it)."""
        with self.answered:
            self.answered.wait_for(lambda: key in self.replies or self.broken)
            return self.replies.get(key, {"run_id": None, "origin": {}})

    def spool_path(self, name: str) -> Path:
        self.files += 1
        folder = self.spool / str(self.files)
        folder.mkdir()
        return folder / name

    def close(self) -> None:
        """End the companion once it has performed every queued operation."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        self.process.wait()
        shutil.rmtree(self.spool, ignore_errors=True)


_companion: Companion | None = None


def start_companion() -> None:
    """Log this process's runs through a :class:`Companion` (unless ``UNLEARN_MLFLOW_COMPANION=0``)."""
    global _companion
    if _companion is None and os.environ.get(COMPANION_ENV, "1") != "0":
        try:
            _companion = Companion()
        except OSError as error:  # tracking must never stop the stage: it logs from its own process
            log.warning("MLflow: no logging companion (%s); this stage logs from its own process", error)


def finish_companion() -> None:
    """Wait for the companion to log everything queued, then end it."""
    global _companion
    companion, _companion = _companion, None
    if companion is not None:
        companion.close()


class TrackedRun:
    """An MLflow run (a stage execution, or a flow execution); every call is failure-tolerant.

    Use as a context manager; the run ends FINISHED, KILLED on Ctrl-C or SIGTERM, or FAILED
    if the body raised.
    A run is nested under ``parent`` (a run id), else under ``UNLEARN_PARENT_RUN_ID`` when
    set; one started while another is active in this process (a job run in the stage's
    own process) is nested under it. While this process has a :class:`Companion`, every call
    is queued to it and returns at once (``run_id`` waits for the run to exist).
    """

    def __init__(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                 parent: str | None = None, origin: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.origin = origin  # git state and provenance known already (a child of a run in this process)
        self.parent = parent
        self.params = params
        self.tags = dict(tags or {})
        self.uri = tracking_uri()
        self._mlflow = None
        self._run_id: str | None = None
        self.failed: str | None = None
        self.not_logged: list[str] = []
        self._pending: list[dict[str, Any]] = []  # what was not logged, for `unlearn sync-mlflow`
        self._journal: Path | None = None
        self._remote: Companion | None = None

    def __enter__(self) -> "TrackedRun":
        companion = _companion
        if companion is not None and companion.owner == os.getpid():
            self._key = f"{id(self):x}-{_now_ms()}"
            tags = {"unlearn.process": f"{socket.gethostname()}:{os.getpid()}", "unlearn.execution": execution_id(),
                    **self.tags}
            if companion.send({"op": "enter", "key": self._key, "name": self.name, "params": self.params,
                               "tags": tags, "parent": self.parent, "origin": self.origin}):
                self._remote = companion
                return self
        self._start_time = _now_ms()
        self._all_tags = {**(self.origin if self.origin is not None else {**git_state(), **provenance()}),
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
            self._start()
        except Exception as exc:  # tracking must never stop the stage
            self._fail("start the run", exc)
            self.not_logged.append("start the run")
            self._pending.append({"op": "start"})
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = ("FINISHED" if exc_type is None
                  else "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
        if self._remote is not None:
            self._remote.send({"op": "exit", "key": self._key, "status": status})
            return
        self._call("end the run", lambda: self._mlflow.end_run(status=status),
                   {"op": "end", "status": status, "timestamp": _now_ms()})
        if self.failed:
            if self._run_id is not None:  # leave no run active in this process; the journal still ends it
                with contextlib.suppress(Exception):
                    self._mlflow.end_run(status=status)
            try:
                self._write_journal()
                kept = f"what was not logged is kept in {self._journal}: run `unlearn sync-mlflow` when the store works"
            except OSError as error:
                kept = f"it could not be kept for `unlearn sync-mlflow` either ({error})"
            log.warning("MLflow (%s): not logged for %s: %s. The outputs are written; %s.",
                        self.uri, self.name, ", ".join(self.not_logged), kept)

    def _start(self) -> None:
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(self.uri), self.uri))
        run = mlflow.start_run(run_name=self.name, tags=self._all_tags, nested=mlflow.active_run() is not None)
        self._run_id = run.info.run_id
        if self._flat_params:
            mlflow.log_params(self._flat_params)

    def _call(self, what: str, fn, op: dict[str, Any]) -> None:
        """Run one MLflow call; after the first failure (or a failed start), only record what was
        skipped, as ``op`` (a JSON-able description that :mod:`unlearn_pipeline.mlflow_sync` replays)."""
        if not self.failed:
            try:
                fn()
                return
            except Exception as exc:  # tracking must never stop the stage
                self._fail(what, exc)
        self.not_logged.append(what)
        self._pending.append(op)

    def _fail(self, what: str, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning("MLflow (%s) failed to %s: %s", self.uri, what, self.failed)

    def _pending_dir(self) -> Path:
        if self._journal is None:
            self._journal = PENDING / f"{self._start_time}-{socket.gethostname()}-{os.getpid()}-{id(self):x}"
            (self._journal / "artifacts").mkdir(parents=True, exist_ok=True)
        return self._journal

    def _write_journal(self) -> None:
        """``<pending dir>/run.json``: the run's identity and every operation that was not logged."""
        from unlearn.io import write_json

        write_json(self._pending_dir() / "run.json", {
            "name": self.name, "run_id": self._run_id, "uri": self.uri, "start_time": self._start_time,
            "tags": self._all_tags, "params": {key: str(value) for key, value in self._flat_params.items()},
            "ops": self._pending})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        op = {"op": "metrics", "metrics": {key: float(value) for key, value in metrics.items()}, "step": step,
              "timestamp": _now_ms()}
        if self._remote is not None:
            self._remote.send({"op": "metrics", "key": self._key, "metrics": op["metrics"], "step": step})
            return
        self._call(f"metrics{'' if step is None else f' (step {step})'}",
                   lambda: self._mlflow.log_metrics(dict(metrics), step=step), op)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None, *, shown: str | None = None) -> None:
        """Log the file ``path`` (``shown``: how messages name it, the path by default)."""
        if self._remote is not None:
            copy_path = self._remote.spool_path(Path(path).name)
            try:
                shutil.copyfile(path, copy_path)  # as it is now: the output may change later
            except OSError as error:  # tracking must never stop the stage
                log.warning("MLflow: artifact %s not logged (%s)", path, error)
                return
            self._remote.send({"op": "artifact", "key": self._key, "path": str(copy_path),
                               "artifact_path": artifact_path, "shown": str(path)})
            return
        op: dict[str, Any] = {"op": "artifact", "name": Path(path).name, "artifact_path": artifact_path}
        self._call(f"artifact {shown or path}", lambda: self._mlflow.log_artifact(str(path), artifact_path), op)
        if self._pending and self._pending[-1] is op:  # keep the file as it is now: the output may change later
            folder = self._pending_dir() / "artifacts" / str(len(self._pending))
            try:
                folder.mkdir()
                shutil.copyfile(path, folder / op["name"])
            except OSError as exc:
                self._pending.pop()
                log.warning("MLflow: artifact %s cannot be kept for `unlearn sync-mlflow` (%s)", path, exc)
                return
            op["file"] = f"artifacts/{folder.name}/{op['name']}"

    def log_model(self, model: torch.nn.Module, registered_name: str, input_example: numpy.ndarray,
                  tags: Mapping[str, str] | None = None) -> None:
        """Log ``model`` (a ``torch.nn.Module``) as this run's MLflow PyTorch model ``model`` and
        register it as a new version of ``registered_name`` (:func:`log_pytorch_model`), with
        ``input_example`` (a numpy array, e.g. one input of shape (1, C, H, W)) and the version
        tags of :meth:`_version_tags` plus ``tags``. ~0.1-0.3 s a
        model, plus once per process ~0.6 s of MLflow's look at the installed packages.

        If it is not logged, the whole module is kept as it is now (``torch.save``) in the
        pending folder, with the example, and ``unlearn sync-mlflow`` logs it then (it reloads it
        with ``weights_only=False``: the classes of the module must still be importable).
        """
        if any(p.device.type != "cpu" for p in model.parameters()):
            model = copy.deepcopy(model).cpu()  # loadable anywhere; MLflow runs the example on the CPU
        if self._remote is not None:
            self._queue_model(model, registered_name, input_example, tags)
            return
        version_tags, description = self._version_tags()
        version_tags.update(tags or {})
        op: dict[str, Any] = {"op": "model", "registered_name": registered_name, "tags": version_tags,
                              "description": description}
        self._call(f"model {registered_name}",
                   lambda: log_pytorch_model(model, registered_name, input_example, self._run_id, version_tags,
                                             description),
                   op)
        if self._pending and self._pending[-1] is op:
            import numpy
            import torch

            folder = self._pending_dir() / "artifacts" / str(len(self._pending))
            try:
                folder.mkdir()
                torch.save(model, folder / "model.pt")
                numpy.save(folder / "input_example.npy", numpy.asarray(input_example))
            except Exception as exc:  # OSError, or a module that cannot be pickled
                self._pending.pop()
                log.warning("MLflow: model %s cannot be kept for `unlearn sync-mlflow` (%s)", registered_name, exc)
                return
            op["file"] = f"artifacts/{folder.name}/model.pt"
            op["input_example"] = f"artifacts/{folder.name}/input_example.npy"

    def _queue_model(self, model: torch.nn.Module, registered_name: str, input_example: numpy.ndarray,
                     tags: Mapping[str, str] | None) -> None:
        """Hand the module (pickled whole, as the pending folder keeps it) to the companion."""
        import numpy
        import torch

        model_path = self._remote.spool_path("model.pt")
        example_path = model_path.with_name("input_example.npy")
        try:
            torch.save(model, model_path)
            numpy.save(example_path, numpy.asarray(input_example))
        except Exception as error:  # OSError, or a module that cannot be pickled: never stop the stage
            log.warning("MLflow: model %s not logged (%s)", registered_name, error)
            return
        self._remote.send({"op": "model", "key": self._key, "registered_name": registered_name,
                           "file": str(model_path), "input_example": str(example_path), "tags": dict(tags or {})})

    def _version_tags(self) -> tuple[dict[str, str], str]:
        """A model version's tags (every param the run logged, ``params.sha256`` of them all, the
        stage and the commit) and one line naming the stage, its own section's values and the hash."""
        flat = {key: str(value) for key, value in sorted(self._flat_params.items())}
        digest = hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()
        stage = self._all_tags.get("dvc.stage", self.name)
        tags = {**flat, "params.sha256": digest, "dvc.stage": stage, "git.commit": self._all_tags.get("git.commit", "")}
        section = stage.replace("@", ".") + "."  # unlearn@amun -> unlearn.amun., train -> train.
        own = [key for key in flat if key.startswith(section)]
        shown = ", ".join(f"{key.split('.')[-1]}={flat[key]}" for key in own[:8])
        described = f"{stage} ({shown})" if shown else stage
        return tags, f"{described}, params sha256 {digest[:12]}, git {tags['git.commit'][:8]}"

    @property
    def origin_tags(self) -> dict[str, str]:
        """The git state and provenance this run was tagged with (see :func:`git_state`, :func:`provenance`)."""
        if self._remote is not None:
            return self._remote.reply(self._key)["origin"]
        return {key: value for key, value in getattr(self, "_all_tags", {}).items()
                if key.startswith(("git.", "version.", "data.")) or key == "python"}

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self._remote is not None:
            self._remote.send({"op": "tags", "key": self._key, "tags": dict(tags)})
            return
        self._call("tags", lambda: self._mlflow.set_tags(dict(tags)), {"op": "tags", "tags": dict(tags)})

    @property
    def run_id(self) -> str | None:
        if self._remote is not None:
            return self._remote.reply(self._key)["run_id"]
        return self._run_id


def log_model_runs(parent: TrackedRun, track: str, results: Mapping[str, Mapping[str, Any]]) -> None:
    """One run per model, nested under the evaluating stage's run ``parent``, with the model's
    metrics under their plain names (``avg_gap``, ``mia_rmia_auc``, ``forget_acc``, ...) and
    tags ``model`` and ``track``: MLflow's runs table, "compare runs" and chart view then put
    the models side by side (the stage's own run keeps only its artifacts and stage-level numbers).

    Nested evaluation runs rather than metrics added to each ``unlearn@<method>`` run: that
    run records how a model was made, and its scores are recomputed by another stage whenever
    the evaluation changes; appending to a finished run of another execution would mix the two."""
    for name, metrics in results.items():
        numbers = {key: float(value) for key, value in metrics.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
        tags = {"model": name, "track": track, "unlearn.job": f"evaluate_{track}"}
        with TrackedRun(f"{parent.name}/{name}", {}, tags=tags, parent=parent.run_id,
                        origin=parent.origin_tags) as run:  # not 2 git calls and 9 package lookups a model
            run.log_metrics(numbers)
