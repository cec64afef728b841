"""The prepared device check runs (CPU, smoke sizes) and reports every item, so that the
first GPU session spends its minutes measuring, not debugging."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_smoke_reports_every_item_without_mlflow_dvc_or_prefect(tmp_path):
    blocker = tmp_path / "sitecustomize.py"  # the device image has none of these
    blocker.write_text("import sys\nfor name in ('mlflow', 'dvc', 'prefect'):\n    sys.modules[name] = None\n")
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--device", "cpu", "--smoke",
                           "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result) >= {"versions", "training", "adversarial", "logits", "spectral_norm", "bitwise_two_runs",
                           "paper_cifar10_fast"}
    assert set(result["training"]) == {"bf16_batch32", "bf16_batch64", "fp32_batch32", "fp32_batch64"}
    assert all(run["s_per_epoch"] > 0 and run["bare_over_train_speed"] > 0 for run in result["training"].values())
    assert result["adversarial"]["samples_per_s"] > 0
    assert result["logits"]["predict_same_under_bf16_and_fp32"] is True
    assert result["logits"]["max_abs_bf16_forward_minus_fp32"] > 0  # bf16 does round: the check can see it
    assert result["spectral_norm"]["rel_error_tf32_off"] < 1e-4
    assert result["bitwise_two_runs"] == {"deterministic": True, "autotuned": True}  # CPU: always
    assert result["paper_cifar10_fast"]["minutes"] > 0 and "| **total**" in result["paper_cifar10_fast"]["table"]
