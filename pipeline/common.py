"""What the stages share: paths, loading the prepared data, models, D_A and the reference
models, and writing tables and figures. Every stage imports this module, so an edit here
re-runs the whole pipeline: keep it small and stable."""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unlearn.errors import DataError
from unlearn.io import load_indices, load_tensors, read_json

if TYPE_CHECKING:  # torch costs ~2 s to import: only the stages that use it do
    import numpy as np
    import torch

    from unlearn_pipeline.tracking import TrackedRun

PREPARED = Path("data/prepared")
IMAGES = PREPARED / "images.pt"
META = PREPARED / "meta.json"
# the deletion requests, in order (data.forget, then requests.files): outside data/prepared, so that
# editing a later request re-runs only the stages that read it (requests, audit)
REQUESTS = Path("data/deletion_requests.json")
SPLITS_CSV = PREPARED / "splits.csv"  # every sample's split, for training a model of one's own on it
MEMORIZATION_SUMMARY = PREPARED / "memorization.json"  # the forget set's scores beside train's (mode memorized)
REQUESTS_MODELS = Path("data/requests")  # each method's model after each later request
REQUESTS_RETRAINS = Path("data/requests_retrain")  # the model retrained after each later request
SPLITS = ("train", "test", "forget", "remain")
MODELS_DIR = Path("data/models")
IMPORTED = MODELS_DIR / "imported.pt"  # stage import_model: the user's checkpoint's weights (empty when unset)
IMPORTED_INFO = MODELS_DIR / "imported.json"  # whether a checkpoint was imported, its sha256 and size
CHECKPOINT_CHECKED = MODELS_DIR / "checkpoint_checked.json"  # the stages that train wait for it (constant)
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
REPORTS_DIR = Path("reports")
CACHE_DIR = Path("data/cache")
ADVERSARIAL = Path("data/adversarial/forget.pt")
REFERENCES = Path("data/references")
KEEP = REFERENCES / "keep.npy"
CHECKPOINTS = Path(".checkpoints")  # per-epoch training state; not an output, removed once a model is stored


def forgotten_so_far(asked: list[dict]) -> list[np.ndarray]:
    """After each deletion request (``asked``, as in :data:`REQUESTS`), the sorted union of the
    samples of requests 1..i."""
    import numpy as np

    return [np.sort(np.concatenate([r["indices"] for r in asked[:i + 1]])).astype(np.int64)
            for i in range(len(asked))]


def split_path(name: str) -> Path:
    return PREPARED / f"{name}.npy"


def model_path(name: str) -> Path:
    return MODELS_DIR / f"{name}.pt"


def summary(track: str, results: dict[str, dict], keys: dict[str, str]) -> dict:
    """The compact metrics file of a track for ``dvc exp show`` / ``dvc metrics show``:
    ``{track: {short name: {model: value}}}`` for every model but retrain (the reference),
    so its columns read ``random.avg_gap.amun`` and a regex on the middle part picks a
    metric for every method."""
    models = [name for name in results if name != "retrain"]
    return {track: {short: {name: round(float(results[name][key]), 4) for name in models
                            if results[name][key] is not None}
                    for key, short in keys.items() if all(key in results[name] for name in models)}}


def runtime_ratio(seconds: float | None, reference_seconds: float | None) -> float | None:
    """``seconds / reference_seconds``; None when either is unknown (an imported original)."""
    return None if seconds is None or reference_seconds is None else seconds / reference_seconds


def stage_device(params) -> torch.device:
    """The device the stages (and their jobs, in whatever process) compute on:
    ``execution.device`` resolved, with ``execution.deterministic`` applied to it."""
    from unlearn.device import resolve_device, set_determinism

    device = resolve_device(params.execution.device)
    set_determinism(device, params.execution.deterministic)
    return device


def device_tags(params) -> dict[str, str]:
    """Where a run computes, for MLflow: ``device``, ``device.name`` and ``precision``."""
    from unlearn.device import device_name

    device = stage_device(params)
    return {"device": str(device), "device.name": device_name(device), "precision": params.execution.precision}


def job_params(params, k: int):
    """``params`` for job ``k`` of a stage (a reference model, a retrained seed): with
    ``execution.device`` ``auto`` or ``cuda`` on a machine with several GPUs, job k gets
    GPU k mod their count (one GPU per job); else the stage's device (jobs in several
    worker processes then share it)."""
    import torch

    device = stage_device(params)
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if count < 2 or params.execution.device.startswith("cuda:"):
        return params
    pinned = params.execution.model_copy(update={"device": f"cuda:{k % count}"})
    return params.model_copy(update={"execution": pinned})


def random_model(name: str) -> str:
    """The name under ``data/models`` (and ``metrics/runtime``) of random-track model ``name``:
    the original and retrained models at the top, the unlearned ones under ``random/``."""
    return name if name in ("original", "retrain") else f"random/{name}"


def metrics_path(name: str) -> Path:
    return METRICS_DIR / "random" / f"{name}.json"


def runtime_path(name: str) -> Path:
    """Wall-clock seconds the stage that wrote model ``name`` spent building it."""
    return METRICS_DIR / "runtime" / f"{name}.json"


def roc_path(name: str) -> Path:
    return PLOTS_DIR / "roc" / f"{name}.csv"


def logits_path(k: int) -> Path:
    """Reference model k's logits on every sample."""
    return REFERENCES / f"logits_{k}.pt"


def checkpoint_path(name: str) -> Path:
    """Where the training of model ``name`` (e.g. "original", "reference 3") saves its epochs."""
    return CHECKPOINTS / f"{name.replace(' ', '_')}.pt"


def remove_checkpoints(*names: str) -> None:
    """Once a stage's outputs are written; until then a re-run after a crash resumes (and a
    multi-job stage restores its finished models instead of training them again)."""
    for name in names:
        checkpoint_path(name).unlink(missing_ok=True)


@dataclass(frozen=True)
class Prepared:
    images: torch.Tensor
    labels: torch.Tensor
    splits: dict[str, np.ndarray]
    meta: dict


def load_prepared(device: torch.device | None = None) -> Prepared:
    """The prepare stage's outputs, checked against each other; the uint8 images moved to
    ``device`` once (batches are then index gathers there), the labels and splits on the CPU."""
    import numpy as np

    from unlearn.data.splits import Splits, check_splits

    meta = read_json(META)
    blob = load_tensors(IMAGES)
    images, labels = blob["images"], blob["labels"]
    splits = {name: load_indices(split_path(name)) for name in SPLITS}
    for name, idx in splits.items():
        if len(idx) != meta["counts"][name] or (len(idx) and idx.max() >= len(labels)):
            raise DataError(f"{split_path(name)}: does not match {IMAGES} and {META}; re-run `dvc repro prepare`")
    if np.intersect1d(splits["forget"], splits["test"]).size:
        raise DataError(f"{split_path('forget')}: overlaps the test split {split_path('test')}; "
                        "re-run `dvc repro prepare`")
    try:
        check_splits(Splits(**splits), len(labels))
    except DataError as exc:
        raise DataError(f"{PREPARED}/*.npy: {exc}; re-run `dvc repro prepare`") from None
    if device is not None and device.type != "cpu":
        images = images.to(device)
    return Prepared(images, labels, splits, meta)


def load_references(samples: int) -> tuple[np.ndarray, torch.Tensor]:
    """The keep matrix (K, N) and the reference logits (K, N, C), checked against each other."""
    import numpy as np
    import torch

    if not KEEP.exists():
        raise DataError(f"{KEEP}: file not found; run `dvc repro references`")
    keep = np.load(KEEP, allow_pickle=False)
    logits = torch.stack([load_tensors(logits_path(k))["logits"] for k in range(len(keep))])
    if keep.dtype != bool or keep.shape != (len(logits), samples) or logits.shape[1] != samples:
        raise DataError(f"{REFERENCES}: keep {keep.shape} and logits {tuple(logits.shape)} do not match the "
                        f"{samples} samples of data/prepared; re-run `dvc repro references`")
    return keep, logits


def csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def metric_cell(metrics: dict, key: str, digits: int = 2) -> str:
    """``metrics[key]`` for a report table, with its 95% interval over samples when the
    metrics carry one (``<key>_ci95``, a half-width): ``52.10 ± 6.93``; ``-`` when absent or None."""
    if metrics.get(key) is None:
        return "-"
    interval = metrics.get(f"{key}_ci95")
    return f"{metrics[key]:.{digits}f}" + ("" if interval is None else f" ± {interval:.{digits}f}")


INTERVAL_NOTE = ("An AUC's ± is its bootstrap 95% interval over samples (MIA-efficacy's: the normal interval of a "
                 "percentage): two models whose intervals overlap are not told apart by that attack, so no "
                 "single model is the best by it.")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(row) + " |" for row in rows])


@contextlib.contextmanager
def figure(filename: str, run: TrackedRun):
    """A matplotlib figure saved as a PNG and logged to MLflow under ``plots/`` (not a DVC output)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        yield fig, ax
        fig.tight_layout()
        with tempfile.TemporaryDirectory() as tmp:
            fig.savefig(Path(tmp) / filename, dpi=100)
            run.log_artifact(Path(tmp) / filename, "plots")
    finally:
        plt.close(fig)
