import logging

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


def test_failed_stage_marks_the_run_failed(project):
    with pytest.raises(ValueError):
        with TrackedRun("boom", {}) as run:
            raise ValueError("stage bug")
    import mlflow

    assert mlflow.MlflowClient().get_run(run.run_id).info.status == "FAILED"
