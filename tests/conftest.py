"""Shared fixtures: a throw-away copy of the project, tiny params, tracking in a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # two test workers on the CPU's cores: one thread each, no oversubscription
    os.environ["OMP_NUM_THREADS"] = "1"
# The stages' warm servers (unlearn_pipeline.stage_server): this test process's own, stopped at its end.
STAGE_SERVERS = Path(tempfile.mkdtemp(prefix="unlearn-stage-servers-"))
os.environ["UNLEARN_STAGE_SERVER_DIR"] = str(STAGE_SERVERS)
os.environ.setdefault("UNLEARN_STAGE_SERVER_IDLE_S", "120")


def pytest_sessionfinish(session, exitstatus) -> None:
    from unlearn_pipeline.stage_server import stop_servers

    stop_servers(STAGE_SERVERS)
    shutil.rmtree(STAGE_SERVERS, ignore_errors=True)


def pytest_collection_modifyitems(items: list) -> None:
    """The slow end-to-end tests first, so that the workers do not end on one of them alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
METHODS = tuple(_PARAMS["unlearn"])  # the method lists are params.yaml's sections, as in dvc.yaml
MODELS = ("original", "retrain", *METHODS)
CLASS_METHODS = tuple(_PARAMS["unlearn_class"])
ALL_STAGES = {"prepare", "import_model", "train", "retrain", "adversarial", "references", "ulira_shadows",
              *(f"unlearn@{m}" for m in METHODS), "evaluate", "requests", "requests_retrain", "audit", "retrain_class",
              *(f"unlearn_class@{m}" for m in CLASS_METHODS), "evaluate_class"}
STUDY_STAGES = {"sweep_cell@0-0", "sweep_cell@1-0", "tuning_cell", "sweep_method@amun", "sweep_method@ft",
                "sweep_report", "smoothness@0", "transfer@0", "class_cell@0-1", "class_tuning_cell",
                "class_method@trw", "class_method@ft", "class_report", "memorized_scores", "memorized_level@high",
                "findings"}

TINY_PARAMS = {
    "train": {"epochs": 2, "batch_size": 128, "lr": 0.05},
    "model": {"name": "small_cnn", "width": 8},
    "lipschitz": {"method": "fastclip", "target": 2.0, "clip_every": 5},
    "transfer": {"targets": [None, 1.0], "seeds": [0], "epochs": 1, "samples": 50, "steps": 5, "steps_linf": 5},
    "smoothness": {"targets": [None, 1.0], "seeds": [0], "methods": ["amun_no_remain"]},
    "adversarial": {"steps": 10},
    "references": {"K": 4, "epochs": 1},
    "unlearn": {method: {"epochs": 2} for method in METHODS if "epochs" in _PARAMS["unlearn"][method]},
    "class_track": {"retrain_seeds": 2},
    "unlearn_class": {**{method: {"epochs": 1} for method in CLASS_METHODS if "epochs" in _PARAMS["unlearn_class"][method]},
                      "unsir": {"epochs": 1, "noise_samples": 16, "noise_steps": 5, "noise_copies": 2}},
    "sweep": {"seeds": [0, 1], "forget_seeds": [0], "methods": ["amun", "ft"], "lr_grid": {"ft": [0.01, 0.05]},
              "step_grid": [5], "references": 4},
    "class_sweep": {"seeds": [0], "classes": [1], "methods": ["trw", "ft"], "lr_grid": {"ft": [0.01, 0.05]}},
    "memorization": {"references": 2, "epochs": 1},
    "memorized_study": {"levels": ["high"], "seeds": [0], "methods": ["amun", "ft"]},
    "flow": {"concurrency": 2, "retries": 0},
    "execution": {"device": "cpu"},  # the hash-comparing tests: a CUDA host runs them on its CPU
}


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def write_params(root: Path, update: dict) -> None:
    """Merge ``update`` into root/params.yaml."""
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(_merge(yaml.safe_load(path.read_text()), update), sort_keys=False))


def git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repo holding a copy of the project's files (what a clone would hold, plus
    uncommitted edits), with tiny params, and MLflow tracking in its own temp dir."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    dest = tmp_path / "project"
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    write_params(dest, TINY_PARAMS)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "copy")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(dest)
    return dest


def mlflow_runs(tmp_project: Path) -> list:
    """All runs in the test's MLflow store (experiment ``unlearn``)."""
    import mlflow

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("unlearn")
    return [] if experiment is None else client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (sqlite in a temp dir) for the whole test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
