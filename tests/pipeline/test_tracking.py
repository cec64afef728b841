import logging
import os
from pathlib import Path

import pytest

from unlearn_pipeline.tracking import EXECUTION_ENV, PARENT_RUN_ENV, TrackedRun, execution_id, flatten
from tests.conftest import mlflow_runs


def test_flatten():
    assert flatten("train", {"lr": 0.1, "opt": {"m": 0.9}}) == {"train.lr": 0.1, "train.opt.m": 0.9}


def test_run_records_params_metrics_artifacts_and_tags(project, tmp_path, monkeypatch):
    artifact = tmp_path / "weights.txt"
    artifact.write_text("w")
    with TrackedRun("parent", {}, tags={"unlearn.flow": "true"}) as parent:
        pass
    monkeypatch.setenv(PARENT_RUN_ENV, parent.run_id)
    with TrackedRun("train", {"train": {"lr": 0.1}}, tags={"dvc.stage": "train"}) as run:
        run.log_metrics({"loss": 1.0}, step=1)
        run.log_metrics({"loss": 0.5}, step=2)
        run.log_artifact(artifact, "model")
    assert run.failed is None
    import mlflow

    client = mlflow.MlflowClient()
    record = client.get_run(run.run_id)
    assert record.data.params == {"train.lr": "0.1"}
    assert record.data.tags["dvc.stage"] == "train"
    assert record.data.tags["mlflow.parentRunId"] == parent.run_id
    assert len(record.data.tags["git.commit"]) == 40 and record.data.tags["git.dirty"] in ("true", "false")
    import torch

    assert torch.__version__.startswith(record.data.tags["version.torch"])
    assert record.data.tags["python"].count(".") == 2
    assert "data.sha256" not in record.data.tags  # nothing prepared yet
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [1.0, 0.5]
    assert [f.path for f in client.list_artifacts(run.run_id, "model")] == ["model/weights.txt"]
    assert len(mlflow_runs(project)) == 2


def test_unreachable_store_does_not_stop_the_stage(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # where the journal of what was not logged goes
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/mlflow.db")
    caplog.set_level(logging.WARNING)
    out = tmp_path / "out.txt"
    with TrackedRun("train", {"train": {"lr": 0.1}}) as run:
        out.write_text("done")  # the stage's own work
        run.log_metrics({"loss": 1.0})
    assert out.read_text() == "done"
    assert run.failed and run.run_id is None
    assert "not logged for train: start the run, metrics, end the run" in caplog.text
    assert len(list((tmp_path / ".unlearn" / "mlflow-pending").glob("*/run.json"))) == 1


def test_failed_stage_marks_the_run_failed(project):
    with pytest.raises(ValueError):
        with TrackedRun("boom", {}) as run:
            raise ValueError("stage bug")
    import mlflow

    assert mlflow.MlflowClient().get_run(run.run_id).info.status == "FAILED"


def _records(uri):
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("unlearn")
    return client, client.search_runs([experiment.experiment_id])


def test_runs_not_logged_while_the_store_is_unreachable_are_logged_by_sync(project, tmp_path, monkeypatch, caplog):
    from unlearn_pipeline.mlflow_sync import pending_runs, sync

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/mlflow.db")
    artifact = project / "weights.txt"
    artifact.write_text("as written by the stage")
    caplog.set_level(logging.WARNING)
    with TrackedRun("train", {"train": {"lr": 0.1}}, tags={"dvc.stage": "train"}) as run:
        run.log_metrics({"loss": 1.0}, step=1)
        run.log_metrics({"loss": 0.5}, step=2)
        run.log_artifact(artifact, "model")
        run.set_tags({"extra": "yes"})
    artifact.write_text("changed later")
    assert "run `unlearn sync-mlflow` when the store works" in caplog.text
    assert len(pending_runs()) == 1
    logged, error = sync()  # still unreachable: nothing logged, the journal is kept
    assert logged == 0 and "not-a-dir" in error and len(pending_runs()) == 1

    good = f"sqlite:///{tmp_path / 'good.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", good)
    assert sync() == (1, None) and pending_runs() == []
    client, runs = _records(good)
    (record,) = runs
    assert record.info.run_name == "train" and record.info.status == "FINISHED"
    assert record.data.params == {"train.lr": "0.1"}
    assert record.data.tags["dvc.stage"] == "train" and record.data.tags["extra"] == "yes"
    assert record.data.tags["unlearn.synced"] == "true" and len(record.data.tags["git.commit"]) == 40
    assert [(m.step, m.value) for m in client.get_metric_history(record.info.run_id, "loss")] == [(1, 1.0), (2, 0.5)]
    local = client.download_artifacts(record.info.run_id, "model/weights.txt", str(tmp_path))
    assert open(local).read() == "as written by the stage"
    assert sync() == (0, None)


def test_calls_that_fail_on_a_locked_store_are_added_to_the_same_run_by_sync(project, monkeypatch):
    import sqlite3

    from unlearn_pipeline.mlflow_sync import pending_runs, sync

    uri = os.environ["MLFLOW_TRACKING_URI"]
    with TrackedRun("evaluate", {}) as run:
        run.log_metrics({"acc": 0.9})
        lock = sqlite3.connect(uri.removeprefix("sqlite:///"), timeout=0)
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the store
        run.log_metrics({"auc": 51.0})
        lock.rollback()
        lock.close()
    assert run.failed and "database is locked" in run.failed
    assert run.not_logged == ["metrics", "end the run"]
    assert len(pending_runs()) == 1
    assert sync() == (1, None)
    client, (record,) = _records(uri)
    assert record.info.run_id == run.run_id
    assert record.data.metrics == {"acc": 0.9, "auc": 51.0} and record.info.status == "FINISHED"


def test_a_stage_run_without_a_store_is_logged_later_by_unlearn_sync_mlflow(project, tmp_path):
    import subprocess
    import sys

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{blocker}/mlflow.db"}
    done = subprocess.run([sys.executable, "-m", "unlearn_pipeline", "prepare"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and (project / "data" / "prepared" / "meta.json").exists()
    assert "not logged for prepare: start the run, metrics, tags, artifact data/prepared/meta.json" in done.stderr
    done = subprocess.run(["unlearn", "sync-mlflow"], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "1 run(s) stay pending" in done.stdout
    done = subprocess.run(["unlearn", "doctor"], capture_output=True, text=True)
    assert "1 run(s) not logged yet: run `unlearn sync-mlflow`" in done.stdout

    done = subprocess.run(["unlearn", "sync-mlflow"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "logged 1 of 1 pending run(s)" in done.stdout
    client, (record,) = _records(os.environ["MLFLOW_TRACKING_URI"])
    assert record.info.run_name == "prepare" and record.data.metrics["n_forget"] > 0
    assert sorted(f.path for f in client.list_artifacts(record.info.run_id, "splits")) == [
        "splits/deletion_requests.json", "splits/forget.npy", "splits/meta.json", "splits/remain.npy",
        "splits/splits.csv", "splits/test.npy",
        "splits/train.npy"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty MLflow store in a temp dir (no project copy), the cwd for pending journals."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return os.environ["MLFLOW_TRACKING_URI"]


def test_the_experiment_opens_in_the_model_training_view(store, monkeypatch):
    import mlflow

    with TrackedRun("train", {}):
        pass
    client = mlflow.MlflowClient(store)
    assert client.get_experiment_by_name("unlearn").tags["mlflow.experimentKind"] == "custom_model_development"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "older")
    client.create_experiment("older")  # as made before the tag existed
    with TrackedRun("train", {}):
        pass
    assert client.get_experiment_by_name("older").tags["mlflow.experimentKind"] == "custom_model_development"


def _small_cnn():
    import torch
    from unlearn.models import create_model

    model = create_model("small_cnn", in_channels=1, num_classes=10, seed=0, width=8, batch_norm=True,
                         mean=[0.5], std=[0.25])
    with torch.no_grad():
        model(torch.randn(16, 1, 8, 8))  # train mode: BatchNorm's running stats move off their defaults
    return model


def _assert_same_outputs(model, uri):
    import mlflow.pytorch
    import torch

    loaded = mlflow.pytorch.load_model(uri)
    batch = torch.randn(32, 1, 8, 8)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(batch), model(batch))


def test_log_model_registers_a_pytorch_model_that_gives_the_same_outputs(store):
    import time

    import mlflow
    import numpy as np
    import torch

    model = _small_cnn()
    example = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    with TrackedRun("train", {}) as run:
        with torch.no_grad():
            model(torch.from_numpy(example))  # as after training: the model has run in this process
        started = time.perf_counter()
        run.log_model(model, "cnn", example)
        first = time.perf_counter() - started
        assert model.training  # its mode is restored
        started = time.perf_counter()
        run.log_model(model, "cnn", example)
        second = time.perf_counter() - started
    assert run.failed is None, run.failed
    assert second < 1.5, (first, second)  # the first call also pays MLflow's one-time imports
    from importlib.metadata import version

    from mlflow.utils import environment
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    assert environment.warn_dependency_requirement_mismatches is warn_dependency_requirement_mismatches  # restored
    assert mlflow.pyfunc.warn_dependency_requirement_mismatches is warn_dependency_requirement_mismatches
    requirements = Path(mlflow.pyfunc.get_model_dependencies("models:/cnn/latest")).read_text().split()
    assert f"torch=={version('torch')}" in requirements and f"mlflow=={mlflow.__version__}" in requirements
    client = mlflow.MlflowClient(store)
    assert sorted(int(v.version) for v in client.search_model_versions("name='cnn'")) == [1, 2]
    assert len(client.get_run(run.run_id).outputs.model_outputs) == 2  # the run's Models column
    _assert_same_outputs(model, "models:/cnn/latest")


def test_a_model_not_logged_is_kept_and_logged_by_sync(store, tmp_path, monkeypatch):
    import numpy as np
    import torch

    from unlearn_pipeline.mlflow_sync import pending_runs, sync

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/mlflow.db")
    model = _small_cnn()
    with TrackedRun("train", {}) as run:
        run.log_model(model, "cnn", np.zeros((1, 1, 8, 8), np.float32))
    assert run.not_logged == ["start the run", "model cnn", "end the run"]
    with torch.no_grad():
        model(torch.randn(4, 1, 8, 8))  # the stage goes on: what is kept is the model as logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    (folder,) = pending_runs()
    (kept,) = folder.glob("artifacts/*/model.pt")
    logged = torch.load(kept, weights_only=False)
    assert sync() == (1, None) and pending_runs() == []
    _assert_same_outputs(logged, "models:/cnn/1")
    _, (record,) = _records(store)
    assert record.info.status == "FINISHED" and len(record.outputs.model_outputs) == 1


def test_runs_of_one_execution_share_the_execution_tag(store, monkeypatch):
    import mlflow

    monkeypatch.setenv(EXECUTION_ENV, "flow-123")
    with TrackedRun("prepare", {}) as first, TrackedRun("train", {}) as second:
        pass
    client = mlflow.MlflowClient(store)
    assert {client.get_run(r.run_id).data.tags["unlearn.execution"] for r in (first, second)} == {"flow-123"}
    monkeypatch.delenv(EXECUTION_ENV)
    with TrackedRun("prepare", {}) as third:
        pass
    derived = client.get_run(third.run_id).data.tags["unlearn.execution"]
    assert derived == execution_id() != "flow-123" and not derived.startswith("dvc-")  # pytest is no dvc


def test_a_stage_started_by_dvc_takes_the_execution_of_that_dvc_process(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.delenv(EXECUTION_ENV, raising=False)
    stage = "from unlearn_pipeline.tracking import execution_id; print(execution_id())"
    fake_dvc = tmp_path / "dvc"  # runs the stage through a shell, as `dvc repro` does
    fake_dvc.write_text(f"#!{sys.executable}\nimport os, subprocess\nprint(os.getpid(), flush=True)\n"
                        f"subprocess.run(['/bin/sh', '-c', '{sys.executable} -c \"{stage}\" && true'])\n")
    fake_dvc.chmod(0o755)
    pid, execution = subprocess.run([str(fake_dvc), "repro"], capture_output=True, text=True, check=True).stdout.split()
    assert execution.startswith(f"dvc-{pid}-")


def test_a_stage_logs_through_its_companion_what_it_would_log_itself(store, tmp_path):
    """The companion (a child importing MLflow while the stage works) logs the same runs: the
    stage's run, a nested job run, metrics, tags, an artifact as it was when logged, a model."""
    import mlflow
    import numpy as np

    from unlearn_pipeline.tracking import finish_companion, start_companion

    artifact = tmp_path / "report.md"
    artifact.write_text("as logged")
    model = _small_cnn()
    example = np.zeros((1, 1, 8, 8), dtype=np.float32)
    start_companion()
    try:
        with TrackedRun("evaluate", {"evaluate": {"batch_size": 8}}, tags={"dvc.stage": "evaluate"}) as run:
            with TrackedRun("evaluate/amun", {}, tags={"model": "amun"}, parent=run.run_id,
                            origin=run.origin_tags) as child:
                child.log_metrics({"avg_gap": 0.5})
            run.log_metrics({"loss": 1.0}, step=1)
            run.set_tags({"data.sha256": "abc"})
            run.log_artifact(artifact, "report")
            artifact.write_text("changed after logging")
            run.log_model(model, "cnn", example)
            with pytest.raises(RuntimeError):
                with TrackedRun("failing", {}) as failed:
                    raise RuntimeError("stage failed")
            for k in range(60):  # ~90 KB of answers nobody asks for: more than a pipe holds
                with TrackedRun(f"tune-point {k}", {}, parent=run.run_id):
                    pass
    finally:
        finish_companion()
    client = mlflow.MlflowClient(store)
    record, nested = client.get_run(run.run_id), client.get_run(child.run_id)
    assert record.info.status == "FINISHED" and record.data.params == {"evaluate.batch_size": "8"}
    assert record.data.tags["dvc.stage"] == "evaluate" and record.data.tags["data.sha256"] == "abc"
    assert record.data.tags["unlearn.process"].endswith(f":{os.getpid()}")  # the stage's process, not the companion
    assert nested.data.tags["mlflow.parentRunId"] == run.run_id and nested.data.metrics == {"avg_gap": 0.5}
    assert nested.data.tags["git.commit"] == record.data.tags["git.commit"]
    assert client.get_run(failed.run_id).info.status == "FAILED"
    nested_runs = client.search_runs([record.info.experiment_id], f"tags.mlflow.parentRunId = '{run.run_id}'")
    assert len(nested_runs) == 62  # the job run, the failing one and the 60 tuning points
    assert Path(client.download_artifacts(run.run_id, "report/report.md", str(tmp_path / "got"))).read_text() == (
        "as logged")
    (version,) = client.search_model_versions("name='cnn'")
    assert version.tags["dvc.stage"] == "evaluate" and version.run_id == run.run_id
    mlflow.set_tracking_uri(store)  # this process never logged: its MLflow may point at an earlier test's store
    _assert_same_outputs(model, "models:/cnn/1")
