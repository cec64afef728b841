"""`unlearn doctor` and the two-run reproducibility of the pipeline's outputs."""

import hashlib
import shutil
import subprocess
import sys

from tests.conftest import write_params


def run(root, *args):
    return subprocess.run([sys.executable, "-m", *args], cwd=root, capture_output=True, text=True)


def doctor(root):
    return subprocess.run(["unlearn", "doctor"], cwd=root, capture_output=True, text=True)


def test_doctor_reports_environment_dataset_and_dvc_state_and_fails_on_damage(project):
    done = doctor(project)
    assert done.returncode == 0, done.stdout
    assert "torch 2." in done.stdout and "digits: embedded" in done.stdout
    assert "not prepared yet" in done.stdout and "stage(s) stale" in done.stdout
    assert "run `dvc repro studies/dvc.yaml`" in done.stdout  # the studies need their own command
    assert done.stdout.rstrip().splitlines()[-1].startswith("no problems; ") and "all good" not in done.stdout
    assert "execution.device cpu -> cpu (" in done.stdout and "precision fp32" in done.stdout  # the tests pin cpu

    assert run(project, "unlearn_pipeline", "prepare").returncode == 0
    assert "hashes match" in doctor(project).stdout
    (project / "data" / "prepared" / "forget.npy").write_bytes(b"damaged")
    done = doctor(project)
    assert done.returncode == 1
    assert "data/prepared/forget.npy: missing or does not match its hash" in done.stdout

    write_params(project, {"original": {"checkpoint": "data/user/models/absent.pt"}})
    done = doctor(project)
    assert done.returncode == 1 and "data/user/models/absent.pt: not found" in done.stdout
    write_params(project, {"original": {"checkpoint": None}})

    write_params(project, {"data": {"dataset": "cifar10", "root": "nowhere"}})
    done = doctor(project)
    assert done.returncode == 1 and "ERR dataset" in done.stdout and "ok  params" in done.stdout
    write_params(project, {"data": {"dataset": "digits", "root": "data/raw"}})

    write_params(project, {"train": {"epochs": 0}})
    done = doctor(project)
    assert done.returncode == 1 and "params.yaml: train.epochs = 0: must be >= 1" in done.stdout


def test_same_params_and_seed_give_bit_identical_splits_and_models(project):
    def outputs() -> dict[str, str]:
        for stage in ("prepare", "import_model", "train"):
            done = run(project, "unlearn_pipeline", stage)
            assert done.returncode == 0, done.stderr
        files = sorted((project / "data" / "prepared").glob("*")) + [project / "data" / "models" / "original.pt",
                                                                      project / "plots" / "train" / "original.csv"]
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

    first = outputs()
    shutil.rmtree(project / "data")
    assert outputs() == first and len(first) == 10


def test_doctor_finds_a_copied_mlflow_store_that_would_write_into_another_workspace(project, tmp_path, monkeypatch):
    """MLflow keeps an experiment's artifact root as an absolute path: a workspace copied with its
    mlflow.db would log its runs' artifacts into the original's mlruns/."""
    import mlflow

    from unlearn_pipeline.tracking import experiment_id

    original = tmp_path / "original"
    original.mkdir()
    uri = f"sqlite:///{original / 'mlflow.db'}"
    experiment_id(mlflow.MlflowClient(uri), uri)
    shutil.copy(original / "mlflow.db", project / "mlflow.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    done = doctor(project)
    assert done.returncode == 1 and "ERR mlflow" in done.stdout
    assert f"stores artifacts in {original / 'mlruns'}, outside this workspace" in done.stdout
