"""A stage killed mid-training (SIGTERM or SIGKILL): `dvc repro` afterwards resumes from
the last epoch checkpoint and gives bit-identical outputs to an uninterrupted run."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

from tests.conftest import git, write_params

OUTPUTS = ("data/models/original.pt", "plots/train/original.csv")


def _hashes(root):
    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in OUTPUTS}


def _kill_mid_training(root, sig):
    """Start `dvc repro train`, wait for its first epoch checkpoint, send ``sig`` to the stage's process group."""
    proc = subprocess.Popen(["dvc", "repro", "train"], cwd=root, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = root / ".checkpoints" / "original.pt"
    deadline = time.monotonic() + 180
    while not checkpoint.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0, output
    return output


def test_killed_training_resumes_to_the_uninterrupted_result(project):
    write_params(project, {"train": {"epochs": 12}})
    for stage in ("prepare", "import_model", "train"):  # the uninterrupted reference, outside DVC (no run cache entry)
        assert subprocess.run([sys.executable, "-m", "unlearn_pipeline", stage], cwd=project).returncode == 0
    reference = _hashes(project)
    assert not (project / ".checkpoints" / "original.pt").exists()  # removed once the model is stored

    for sig in (signal.SIGTERM, signal.SIGKILL):
        # forget earlier runs, so that DVC must run the stage rather than check out a cached result
        shutil.rmtree(project / "data" / "models", ignore_errors=True)
        shutil.rmtree(project / ".dvc" / "cache", ignore_errors=True)
        git(project, "checkout", "dvc.lock")
        output = _kill_mid_training(project, sig)
        assert not (project / "data" / "models" / "original.pt").exists()
        assert not list((project / "data" / "models").glob(".*.tmp")), "a temporary file was left behind"
        if sig == signal.SIGTERM:
            assert "train interrupted (SIGTERM)" in output
        done = subprocess.run(["dvc", "repro", "train"], cwd=project, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "original: resumed after epoch" in done.stderr + done.stdout
        assert _hashes(project) == reference, sig
        assert not (project / ".checkpoints" / "original.pt").exists()


def test_the_checkpoint_fingerprint_changes_with_what_the_training_depends_on():
    import numpy as np

    from unlearn_pipeline.common import Prepared
    from unlearn_pipeline.fitting import training_fingerprint
    from unlearn.config import parse_params

    params = parse_params({})
    data = Prepared(None, None, {}, {"sha256": {"images.pt": "a" * 64}})
    indices = np.arange(10)
    base = training_fingerprint("original", params, data, indices, 0)
    assert training_fingerprint("original", params, data, indices, 0) == base
    changed = [
        training_fingerprint("retrain", params, data, indices, 0),
        training_fingerprint("original", params, data, indices, 1),
        training_fingerprint("original", params, data, indices[:-1], 0),
        training_fingerprint("original", params, Prepared(None, None, {}, {"sha256": {"images.pt": "b" * 64}}),
                             indices, 0),
        *(training_fingerprint("original", parse_params(update), data, indices, 0) for update in (
            {"train": {"lr": 0.5}}, {"train": {"epochs": 3}}, {"model": {"width": 4}},
            {"lipschitz": {"method": "fastclip", "target": 3.0}})),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_a_killed_references_stage_keeps_finished_models_and_resumes_the_rest(project):
    write_params(project, {"references": {"K": 3, "epochs": 8}, "mia": {"fixed_variance": True}})
    stage = [sys.executable, "-m", "unlearn_pipeline", "references"]
    assert subprocess.run([sys.executable, "-m", "unlearn_pipeline", "prepare"], cwd=project).returncode == 0
    assert subprocess.run(stage, cwd=project, capture_output=True).returncode == 0
    logits = [f"data/references/logits_{k}.pt" for k in range(3)]
    reference = {rel: hashlib.sha256((project / rel).read_bytes()).hexdigest() for rel in logits}
    shutil.rmtree(project / "data" / "references")

    proc = subprocess.Popen(stage, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    second = project / ".checkpoints" / "reference_1.pt"  # model 0 is done, model 1 has an epoch behind it
    deadline = time.monotonic() + 180
    while not second.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (project / "data" / "references" / "logits_2.pt").exists()

    done = subprocess.run(stage, cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "reference 0: resumed after epoch 8" in done.stderr  # restored, not trained again
    assert "reference 1: resumed after epoch" in done.stderr
    assert "reference 2: resumed" not in done.stderr
    assert {rel: hashlib.sha256((project / rel).read_bytes()).hexdigest() for rel in logits} == reference
    assert list((project / ".checkpoints").glob("*")) == []
