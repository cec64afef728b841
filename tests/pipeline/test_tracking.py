import logging
import os

import pytest

from pipeline.tracking import PARENT_RUN_ENV, TrackedRun, flatten
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
    from pipeline.mlflow_sync import pending_runs, sync

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

    from pipeline.mlflow_sync import pending_runs, sync

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
    done = subprocess.run([sys.executable, "-m", "pipeline", "prepare"], env=env, capture_output=True, text=True)
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
        "splits/forget.npy", "splits/meta.json", "splits/remain.npy", "splits/test.npy", "splits/train.npy"]
