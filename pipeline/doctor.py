"""``unlearn doctor``: is this workspace ready, and is it in sync with ``dvc.lock``?

Prints the environment (Python, package versions, threads, GPU), whether params.yaml is
valid, the device and precision the stages will use, where the dataset comes from, whether
the forget lists and checkpoint that params.yaml names exist,
whether the prepared data still matches its recorded hash, where MLflow writes (and how
many runs wait for ``unlearn sync-mlflow``), and which DVC stages are stale. Exit status 1 when
something is broken (invalid params, missing dataset or named file, damaged prepared data), else 0:
stale stages are normal work for `dvc repro`, not an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from unlearn_pipeline.tracking import EXPERIMENT, PREPARED_META, provenance, tracking_uri
from unlearn.errors import UserError


def doctor(root: Path = Path(".")) -> int:
    problems = 0
    stale: list[str] = []

    def report(label: str, text: str, ok: bool = True) -> None:
        nonlocal problems
        problems += not ok
        print(f"{'ok ' if ok else 'ERR'} {label:12s} {text}")

    tags = provenance(root)
    report("python", f"{tags.pop('python')} ({sys.executable})")
    versions = [f"{key.removeprefix('version.')} {value}" for key, value in tags.items() if key.startswith("version.")]
    report("packages", ", ".join(versions))
    import torch

    cuda = "available" if torch.cuda.is_available() else "not available"
    report("torch", f"{torch.get_num_threads()} threads, CUDA {cuda}")
    try:
        from unlearn.config import load_params
        from unlearn.data.datasets import dataset_source
        from unlearn_pipeline.common import device_tags

        params = load_params(root / "params.yaml")
        report("params", f"{root / 'params.yaml'} is valid")
        tags = device_tags(params)
        report("device", f"execution.device {params.execution.device} -> {tags['device']} ({tags['device.name']}), "
                         f"precision {tags['precision']}")
        data = params.data
        try:
            source = dataset_source(data.dataset, root=root / data.root, path=data.path, download=data.download)
            report("dataset", f"{data.dataset}: {source}")
        except UserError as exc:  # a dataset problem, not a params one
            report("dataset", str(exc), ok=False)
        named = [f for f in (data.forget.file, *params.requests.files, params.original.checkpoint) if f]
        if named:
            missing = [f for f in named if not (root / f).is_file()]
            report("your files", f"{missing[0]}: not found" if missing else f"{', '.join(named)} present",
                   ok=not missing)
    except UserError as exc:
        report("params", str(exc), ok=False)
    report("prepared", *_prepared_status(root))
    report("mlflow", *_mlflow_status(root))
    text, ok, stale = _dvc_status(root)
    report("dvc", text, ok)
    if problems:
        print(f"\n{problems} problem(s) found")
    elif stale:
        print(f"\nno problems; {len(stale)} stage(s) to run: see dvc above")
    else:
        print("\nall good")
    return 1 if problems else 0


def _prepared_status(root: Path) -> tuple[str, bool]:
    from unlearn.io import file_sha256

    meta_path = root / PREPARED_META
    if not meta_path.exists():
        return "not prepared yet (`dvc repro prepare`)", True
    meta = json.loads(meta_path.read_text())
    damaged = [name for name, digest in meta["sha256"].items()
               if not (meta_path.parent / name).exists() or file_sha256(meta_path.parent / name) != digest]
    if damaged:
        return f"{meta_path.parent / damaged[0]}: missing or does not match its hash in {PREPARED_META}; " \
               f"re-run `dvc repro prepare`", False
    return f"{meta['dataset']}, {meta['counts']}, hashes match", True


def _mlflow_status(root: Path) -> tuple[str, bool]:
    from unlearn_pipeline.mlflow_sync import pending_runs

    waiting = len(pending_runs(root))
    text = tracking_uri(root) + (f"; {waiting} run(s) not logged yet: run `unlearn sync-mlflow`" if waiting else "")
    elsewhere = _artifacts_elsewhere(root)
    if elsewhere:
        return (f"{text}; but its experiment '{EXPERIMENT}' stores artifacts in {elsewhere}, outside this "
                f"workspace (a copied mlflow.db?): runs would write there. Move mlflow.db and mlruns/ aside for "
                f"a new store, or set MLFLOW_TRACKING_URI"), False
    return text, True


def _artifacts_elsewhere(root: Path) -> str | None:
    """The artifact root of this workspace's own sqlite store when it lies outside the
    workspace, else None. MLflow stores an experiment's artifact location as an absolute URI
    (its sqlite store resolves local paths when the experiment is created), so a copied
    workspace keeps pointing at the original's ``mlruns/``. Read with sqlite3: no MLflow import."""
    import sqlite3

    uri = tracking_uri(root)
    database = Path(uri.removeprefix("sqlite:///"))
    if not uri.startswith("sqlite:///") or not database.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            row = connection.execute("SELECT artifact_location FROM experiments WHERE name = ?",
                                     (os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT),)).fetchone()
    except sqlite3.Error:
        return None
    if row is None or not row[0]:
        return None
    location = Path(row[0].removeprefix("file://"))
    return None if location.resolve().is_relative_to(root.resolve()) else str(location)


def _dvc_status(root: Path) -> tuple[str, bool, list[str]]:
    """(the line to print, whether DVC answered, the stale stages), the studies' stages named
    apart with the command that brings them up to date (``dvc repro`` runs dvc.yaml only)."""
    done = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        return f"`dvc status` failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}", False, []
    stale = sorted(json.loads(done.stdout or "{}"))
    if not stale:
        return "workspace in sync with dvc.lock", True, []
    studies = [name for name in stale if name.startswith("studies/")]
    default = [name for name in stale if not name.startswith("studies/")]
    parts = []
    for names, command in ((default, "dvc repro"), (studies, "dvc repro studies/dvc.yaml")):
        if names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            parts.append(f"{len(names)} stage(s) stale ({shown}): run `{command}`")
    return "; ".join(parts), True, stale
