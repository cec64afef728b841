"""The stage CLI: bad input stops the stage before any work, with one clear line."""

import subprocess
import sys

import yaml

from pipeline.stages import STAGES
from tests.conftest import ROOT, write_params


def run_stage(root, *args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=root, capture_output=True, text=True)


def test_bad_param_exits_2_with_one_line_and_writes_nothing(project):
    write_params(project, {"data": {"forget": {"fraction": 1.5}}})
    done = run_stage(project, "prepare")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: params.yaml: data.forget.fraction = 1.5: must be in (0, 1)"
    assert "Traceback" not in done.stderr
    assert not (project / "data" / "prepared").exists()


def test_missing_inputs_are_named(project):
    done = run_stage(project, "train")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: data/prepared/meta.json: file not found"


def test_missing_dataset_is_explained(project):
    write_params(project, {"data": {"dataset": "cifar10"}})
    done = run_stage(project, "prepare")
    assert done.returncode == 2
    assert "dataset 'cifar10' not found under data/raw/" in done.stderr
    assert "Traceback" not in done.stderr


def test_dvc_yaml_declares_exactly_the_sections_each_stage_reads():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, spec in dvc.items():
        spec = spec.get("do", spec)
        declared = tuple(p for p in spec.get("params", []) if isinstance(p, str))
        assert declared == STAGES[name].sections, name
        assert spec["cmd"].startswith(f"python -m pipeline {name}")
