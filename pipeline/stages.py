"""One function per DVC stage: read params + inputs, call the library, write outputs
atomically, log to MLflow. The graph itself lives only in dvc.yaml."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pipeline.class_track import evaluate_class, retrain_class, unlearn_class
from pipeline.references import references
from pipeline.sweep import sweep_cell, sweep_report, tune
from pipeline.tracking import TrackedRun
from unlearn.config import Params
from unlearn.errors import DataError
from unlearn.io import file_sha256, load_indices, load_tensors, read_json, save_indices, save_tensors, write_json, write_text

if TYPE_CHECKING:  # torch costs ~2 s to import: only the stages that use it do
    import numpy as np
    import torch

log = logging.getLogger(__name__)

PREPARED = Path("data/prepared")
IMAGES = PREPARED / "images.pt"
META = PREPARED / "meta.json"
SPLITS = ("train", "test", "forget", "remain")
MODELS_DIR = Path("data/models")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
REPORTS_DIR = Path("reports")
CACHE_DIR = Path("data/cache")
CHECKPOINTS = Path(".checkpoints")  # per-epoch training state; not an output, removed once a model is stored


def split_path(name: str) -> Path:
    return PREPARED / f"{name}.npy"


def model_path(name: str) -> Path:
    return MODELS_DIR / f"{name}.pt"


def metrics_path(name: str) -> Path:
    return METRICS_DIR / f"{name}.json"


def evaluation_path(name: str) -> Path:
    """Model ``name``'s own measurements (``metrics_path`` adds the comparison with retrain)."""
    return Path("data/evaluation") / f"{name}.json"


def runtime_path(name: str) -> Path:
    """Wall-clock seconds the stage that wrote model ``name`` spent building it."""
    return METRICS_DIR / "runtime" / f"{name}.json"


def _progress() -> bool:
    return sys.stderr.isatty()


# ---------------------------------------------------------------- prepare

def prepare(params: Params, run: TrackedRun) -> None:
    """Decode the dataset to uint8 tensors and write the seeded splits as index files."""
    import torch

    from unlearn.data import load_dataset, make_splits

    cfg = params.data
    data = load_dataset(cfg.dataset, root=cfg.root, path=cfg.path, download=cfg.download, cache_dir=CACHE_DIR)
    splits = make_splits(data.labels.numpy(), seed=params.seed, forget=cfg.forget,
                         test_start=data.test_start, test_fraction=cfg.test_fraction)
    train_pixels = data.images[torch.as_tensor(splits.train)].float().div_(255)
    mean = train_pixels.mean(dim=(0, 2, 3)).tolist()
    std = train_pixels.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    save_tensors(IMAGES, {"images": data.images, "labels": data.labels})
    for name, idx in splits.as_dict().items():
        save_indices(split_path(name), idx)
    meta = {
        "dataset": cfg.dataset,
        "classes": list(data.classes),
        "test_start": data.test_start,
        "shape": list(data.images.shape[1:]),
        "mean": mean,
        "std": std,
        "counts": {name: int(len(idx)) for name, idx in splits.as_dict().items()},
        "sha256": {path.name: file_sha256(path) for path in [IMAGES, *map(split_path, SPLITS)]},
    }
    write_json(META, meta)
    log.info("prepared %s: %s", cfg.dataset, meta["counts"])
    run.log_metrics({f"n_{name}": count for name, count in meta["counts"].items()})
    run.set_tags({"data.sha256": meta["sha256"]["images.pt"]})
    for path in [META, *map(split_path, SPLITS)]:
        run.log_artifact(path, "splits")


@dataclass(frozen=True)
class Prepared:
    images: torch.Tensor
    labels: torch.Tensor
    splits: dict[str, np.ndarray]
    meta: dict


def load_prepared() -> Prepared:
    """The prepare stage's outputs, checked against each other."""
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
        raise DataError(f"{split_path('forget')}: overlaps the test split {split_path('test')}; re-run `dvc repro prepare`")
    try:
        check_splits(Splits(**splits), len(labels))
    except DataError as exc:
        raise DataError(f"{PREPARED}/*.npy: {exc}; re-run `dvc repro prepare`") from None
    return Prepared(images, labels, splits, meta)


# ---------------------------------------------------------------- train / retrain

def train(params: Params, run: TrackedRun) -> None:
    """The original model: the recipe of ``train`` on all of train."""
    _fit("original", "train", params, run)


def retrain(params: Params, run: TrackedRun) -> None:
    """The gold standard: the same recipe from scratch on remain only."""
    _fit("retrain", "remain", params, run)


def _fit(name: str, split: str, params: Params, run: TrackedRun) -> None:
    import time

    from unlearn.training import resumed_seconds

    data = load_prepared()
    start = time.perf_counter()
    model, rows = _train_model(name, params, data, data.splits[split], run)
    seconds = time.perf_counter() - start + resumed_seconds(rows)
    save_tensors(model_path(name), model.state_dict())
    remove_checkpoints(name)
    write_json(runtime_path(name), {"runtime_s": round(seconds, 3)})
    run.log_metrics({"runtime_s": seconds})
    _log_layer_norms(name, model, params, data.meta, run)
    curve = PLOTS_DIR / "train" / f"{name}.csv"
    write_text(curve, _csv(["epoch", "loss", "accuracy", "lr"],
                           [[r.epoch, f"{r.loss:.6f}", f"{r.accuracy:.4f}", f"{r.lr:.6g}"] for r in rows]))
    run.log_artifact(model_path(name), "model")
    run.log_artifact(curve, "plots")


def checkpoint_path(name: str) -> Path:
    """Where the training of model ``name`` (e.g. "original", "reference 3") saves its epochs."""
    return CHECKPOINTS / f"{name.replace(' ', '_')}.pt"


def remove_checkpoints(*names: str) -> None:
    """Once a stage's outputs are written; until then a re-run after a crash resumes (and a
    multi-job stage restores its finished models instead of training them again)."""
    for name in names:
        checkpoint_path(name).unlink(missing_ok=True)


def training_fingerprint(name: str, params: Params, data: Prepared, indices: np.ndarray, seed: int) -> str:
    """What a training depends on: its recipe, seed, samples, the prepared images and the library's code."""
    import hashlib
    import json

    import numpy as np

    import unlearn

    digest = hashlib.sha256(json.dumps({
        "name": name, "seed": seed, "model": params.model.model_dump(), "train": params.train.model_dump(),
        "lipschitz": params.lipschitz.model_dump(), "images": data.meta["sha256"]["images.pt"],
    }, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    for source in sorted(Path(unlearn.__file__).parent.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _train_model(name: str, params: Params, data: Prepared, indices: np.ndarray, run: TrackedRun,
                 seed: int | None = None, metric_prefix: str = "") -> tuple[torch.nn.Module, list]:
    """A model built and trained from ``params`` (model, train, lipschitz) on ``indices``;
    per-epoch metrics go to MLflow, their names prefixed by ``metric_prefix``.

    Each epoch is checkpointed to :func:`checkpoint_path`; a re-run with the same
    recipe, data and code resumes from the last one (the caller removes it once the
    model is stored). Returns the model and every epoch's statistics."""
    import torch

    from unlearn.checkpoint import EpochCheckpoint
    from unlearn.training import EpochStats, train_

    seed = params.seed if seed is None else seed
    model = _build_model(params, data.meta, seed)
    idx = torch.as_tensor(indices)
    checkpoint = EpochCheckpoint(checkpoint_path(name), training_fingerprint(name, params, data, indices, seed))

    def on_epoch(stats: EpochStats) -> None:
        log.info("%s epoch %d/%d: loss %.4f, acc %.2f%%, %.0f img/s", name, stats.epoch, params.train.epochs,
                 stats.loss, stats.accuracy, stats.images_per_s)
        run.log_metrics({f"{metric_prefix}{key}": value for key, value in (
            ("train_loss", stats.loss), ("train_acc", stats.accuracy), ("lr", stats.lr),
            ("images_per_s", stats.images_per_s))}, step=stats.epoch)

    history = train_(model, data.images[idx], data.labels[idx], params.train,
                     generator=torch.Generator().manual_seed(seed), callbacks=_clipping(params, model, data.meta, seed),
                     on_epoch=on_epoch, progress=_progress(), checkpoint=checkpoint)
    resumed = sum(stats.resumed for stats in history)
    if resumed:
        log.info("%s: resumed after epoch %d from %s", name, resumed, checkpoint.path)
        run.set_tags({f"{metric_prefix}resumed_after_epoch": str(resumed)})
    return model, history


def _clipping(params: Params, model: torch.nn.Module, meta: dict, seed: int) -> list:
    clip = params.lipschitz
    if clip.method == "none":
        return []
    from unlearn.lipschitz import FastClip

    return [FastClip(model, meta["shape"], target=clip.target, clip_every=clip.clip_every, bn=clip.bn,
                     iters=clip.iters, seed=seed)]


def _log_layer_norms(name: str, model: torch.nn.Module, params: Params, meta: dict, run: TrackedRun) -> None:
    """The exact spectral norm of every layer as FastClip sees it (conv + BN merged in
    ``bn: composite``, conv alone otherwise) and the model's Lipschitz upper bound:
    a dvc plots CSV and MLflow metrics."""
    import torch

    from unlearn.lipschitz import affine_layers, lipschitz_bound, top_singular

    bn = "composite" if params.lipschitz.bn == "composite" else "ignore"
    norms = {layer.name: float(top_singular(layer.module, layer.input_shape, 1, 100,
                                            generator=torch.Generator().manual_seed(0))[0][0])
             for layer in affine_layers(model, meta["shape"], bn)}
    bound, _ = lipschitz_bound(model, meta["shape"])
    path = PLOTS_DIR / "lipschitz" / f"{name}.csv"
    write_text(path, _csv(["layer", "norm"], [[layer, f"{norm:.6f}"] for layer, norm in norms.items()]))
    log.info("%s: largest layer norm %.4f, Lipschitz bound %.4g", name, max(norms.values()), bound)
    run.log_metrics({"lipschitz_bound": bound, "max_layer_norm": max(norms.values()),
                     **{f"layer_norm.{layer}": norm for layer, norm in norms.items()}})
    run.log_artifact(path, "plots")
    with _figure(f"{name}_layer_norms.png", run) as (fig, ax):
        ax.barh(range(len(norms)), list(norms.values()))
        ax.set_yticks(range(len(norms)), list(norms))
        ax.invert_yaxis()
        ax.set(xlabel="spectral norm", ylabel="layer", title=f"{name}: per-layer spectral norms")


def _build_model(params: Params, meta: dict, seed: int | None = None) -> torch.nn.Module:
    from unlearn.models import create_model

    return create_model(params.model.name, in_channels=meta["shape"][0], num_classes=len(meta["classes"]),
                        mean=meta["mean"], std=meta["std"], seed=params.seed if seed is None else seed,
                        width=params.model.width,
                        batch_norm=params.model.batch_norm)


def load_model(name: str, params: Params, meta: dict) -> torch.nn.Module:
    """Rebuild the architecture from params and load ``data/models/<name>.pt`` (weights only)."""
    model = _build_model(params, meta)
    state = load_tensors(model_path(name))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"{model_path(name)}: does not fit model {params.model.name!r} "
                        f"({str(exc).splitlines()[0]}); re-run the stage that wrote it") from None
    return model


# ---------------------------------------------------------------- transfer

def transfer(params: Params, run: TrackedRun) -> None:
    """Smoothness vs transferability: a source and a target model per Lipschitz target,
    PGD on each source, the transfer-rate matrix (metrics JSON, heat-map CSV, MLflow)."""
    import numpy as np
    import torch

    from unlearn.evaluation import accuracy, predict
    from unlearn.evaluation.transfer import transfer_matrix
    from unlearn.lipschitz import lipschitz_bound
    from unlearn.training import to_float

    cfg = params.transfer
    data = load_prepared()
    recipe = params.train.model_copy(update={"epochs": cfg.epochs})
    sources, targets, summary, trained = {}, {}, {}, []
    for target in cfg.targets:
        label = "none" if target is None else f"L{target:g}"
        clip = (params.lipschitz.model_copy(update={"method": "none"}) if target is None
                else params.lipschitz.model_copy(update={"method": "fastclip", "target": target}))
        setting = params.model_copy(update={"train": recipe, "lipschitz": clip})
        for role, offset, models in (("source", 0, sources), ("target", 1, targets)):
            model, _ = _train_model(f"{role}.{label}", setting, data, data.splits["train"], run,
                                    seed=params.seed + offset, metric_prefix=f"{role}.{label}.")
            trained.append(f"{role}.{label}")
            models[label] = model
            test = torch.as_tensor(data.splits["test"])
            summary[f"{role}.{label}"] = {
                "test_acc": round(accuracy(predict(model, data.images[test]), data.labels[test]), 4),
                "lipschitz_bound": round(lipschitz_bound(model, data.meta["shape"])[0], 4)}
    rng = np.random.default_rng([params.seed, 2])
    chosen = torch.as_tensor(np.sort(rng.choice(data.splits["test"], size=min(cfg.samples, len(data.splits["test"])),
                                                replace=False)))
    x, y = to_float(data.images[chosen]), data.labels[chosen]
    matrices = transfer_matrix(sources, targets, x, y, eps=cfg.eps, steps=cfg.steps)
    rates = matrices["rate"]
    rounded = {key: {s: {t: round(r, 2) if r == r else None for t, r in row.items()} for s, row in m.items()}  # NaN -> null
               for key, m in matrices.items()}
    write_json(METRICS_DIR / "transfer.json", {"eps": cfg.eps, "samples": len(chosen), "models": summary, **rounded})
    heat = PLOTS_DIR / "transfer.csv"
    write_text(heat, _csv(["source", "target", "rate"],
                          [[s, t, f"{r:.2f}"] for s, row in rates.items() for t, r in row.items()]))
    remove_checkpoints(*trained)
    for s, row in rates.items():
        log.info("transfer from %s: %s", s, ", ".join(f"{t} {r:.1f}%" for t, r in row.items()))
    run.log_metrics({f"transfer.{s}.{t}": r for s, row in rates.items() for t, r in row.items()})
    run.log_artifact(METRICS_DIR / "transfer.json", "metrics")
    run.log_artifact(heat, "plots")
    names = list(targets)
    grid = np.array([[rates[s][t] for t in names] for s in sources])
    with _figure("transfer_heatmap.png", run) as (fig, ax):
        image = ax.imshow(grid, cmap="viridis")
        ax.set(xticks=range(len(names)), xticklabels=names, yticks=range(len(sources)), yticklabels=list(sources),
               xlabel="target model", ylabel="source model", title=f"transfer rate (%), L2 eps {cfg.eps:g}")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="white")
        fig.colorbar(image)


# ---------------------------------------------------------------- adversarial

ADVERSARIAL = Path("data/adversarial/forget.pt")


def adversarial(params: Params, run: TrackedRun) -> None:
    """AMUN's D_A: an adversarial example of every forget sample against the original model,
    at (close to) the smallest L2 budget on a doubling grid, labelled with the model's prediction."""
    import time

    import torch

    from unlearn.attacks import adversarial_set, choose_eps_init
    from unlearn.training import to_float

    cfg = params.adversarial
    data = load_prepared()
    model = load_model("original", params, data.meta)
    forget = torch.as_tensor(data.splits["forget"])
    x, y = to_float(data.images[forget]), data.labels[forget]
    start = time.perf_counter()
    eps_init = choose_eps_init(model, x, y, cfg, params.seed)
    calibration_s = time.perf_counter() - start
    start = time.perf_counter()
    found = adversarial_set(model, x, y, eps_init=eps_init, steps=cfg.steps, max_doublings=cfg.max_doublings,
                            batch_size=cfg.batch_size)
    seconds = time.perf_counter() - start
    save_tensors(ADVERSARIAL, {"indices": forget, "images": found.images, "labels": found.labels,
                               "eps": found.eps, "distance": found.distance, "capped": found.capped,
                               "seconds": torch.tensor(calibration_s + seconds, dtype=torch.float64)})
    budgets, counts = torch.unique(found.eps, return_counts=True)
    metrics = {"eps_init": eps_init, "samples": len(forget), "seconds": round(seconds, 3),
               "calibration_seconds": round(calibration_s, 3), "eps_cap": eps_init * 2 ** cfg.max_doublings,
               "samples_per_s": round(len(forget) / seconds, 1), "capped": int(found.capped.sum()),
               "already_misclassified": int((found.eps == 0).sum()),
               "distance_median": round(found.distance.median().item(), 4),
               "eps_counts": {f"{b:.4g}": int(c) for b, c in zip(budgets.tolist(), counts.tolist())}}
    write_json(METRICS_DIR / "adversarial.json", metrics)
    if metrics["capped"]:
        log.warning("%d forget samples stayed correctly classified up to eps %.3g (adversarial.max_doublings); "
                    "AMUN will refuse this set", metrics["capped"], metrics["eps_cap"])
    log.info("D_A: %d samples in %.2f s (%.0f/s), eps_init %.3f, budgets %s", len(forget), seconds,
             metrics["samples_per_s"], eps_init, metrics["eps_counts"])
    run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    run.log_artifact(METRICS_DIR / "adversarial.json", "metrics")


# ---------------------------------------------------------------- unlearn

def unlearn(params: Params, run: TrackedRun, method_name: str) -> None:
    """Unlearn the forget set from the original model with ``method_name`` (a name in
    :data:`unlearn.unlearning.METHODS`, settings ``unlearn.<method>``): the model and its
    runtime (``evaluate@<method>`` measures it, ``report`` compares it with retrain).

    ``runtime_s`` is the method's wall-clock time; for AMUN it includes building D_A
    (stage ``adversarial``, calibration included), which the method needs."""
    import time

    import torch

    from unlearn.unlearning import METHODS, ForgetTask

    method = METHODS.get(method_name)
    cfg = getattr(params.unlearn, method_name)
    data = load_prepared()
    adversarial, adversarial_s = _load_adversarial(data) if method.needs_adversarial else (None, 0.0)
    model = load_model("original", params, data.meta)
    task = ForgetTask(data.images, data.labels, torch.as_tensor(data.splits["forget"]),
                      torch.as_tensor(data.splits["remain"]), len(data.meta["classes"]), adversarial)
    start = time.perf_counter()
    method.run(model, task, cfg, torch.Generator().manual_seed(params.seed))
    seconds = time.perf_counter() - start + adversarial_s
    save_tensors(model_path(method_name), model.state_dict())
    write_json(runtime_path(method_name), {"runtime_s": round(seconds, 3),
                                           "remain_access": method.remain_access(cfg)})
    log.info("%s: unlearned %d samples in %.2f s", method_name, len(task.forget), seconds)
    run.log_metrics({"runtime_s": seconds})
    run.log_artifact(model_path(method_name), "model")


def _load_adversarial(data: Prepared):
    """D_A from the adversarial stage, checked against the forget split; with its build time."""
    import numpy as np

    from unlearn.attacks import AdversarialSet

    blob = load_tensors(ADVERSARIAL)
    if not np.array_equal(blob["indices"].numpy(), data.splits["forget"]):
        raise DataError(f"{ADVERSARIAL}: built for another forget set; re-run `dvc repro adversarial`")
    capped = int(blob["capped"].sum())
    if capped:
        raise DataError(f"{ADVERSARIAL}: {capped} forget samples have no adversarial example within the eps cap "
                        f"(eps_init * 2^adversarial.max_doublings); raise adversarial.max_doublings")
    found = AdversarialSet(blob["images"], blob["labels"], blob["eps"], blob["distance"], blob["capped"])
    return found, float(blob["seconds"])


# ---------------------------------------------------------------- evaluate / report

def evaluate(params: Params, run: TrackedRun, name: str) -> None:
    """Model ``name`` on forget, remain and test: accuracy (percent), loss, the attacks
    without reference models (SVC MIA-efficacy, loss attack) and RMIA and LiRA with the
    reference models (AUC, TPR at low FPR, an RMIA ROC curve in ``plots/roc/<name>.csv``),
    with the wall-clock time of the stage that built it, in ``data/evaluation/<name>.json``
    (the report adds the comparison with retrain)."""
    from pipeline.references import load_references
    from unlearn.evaluation import predict, split_metrics
    from unlearn.evaluation.roc import roc_curve_points
    from unlearn.evaluation.suite import attack_metrics, attack_scores

    data = load_prepared()
    keep, reference_logits = load_references(len(data.labels))
    model = load_model(name, params, data.meta)
    logits = predict(model, data.images, params.evaluate.batch_size)
    scores = attack_scores(logits, reference_logits, keep, data.labels, data.splits["test"], params.mia, params.seed)
    metrics = {**split_metrics(logits, data.labels, data.splits),
               **attack_metrics(scores, data.splits, params.mia, params.seed)}
    metrics = {**{k: round(v, 4) for k, v in metrics.items()}, **read_json(runtime_path(name))}
    write_json(evaluation_path(name), metrics)
    fpr, tpr = roc_curve_points(scores["rmia"][data.splits["forget"]], scores["rmia"][data.splits["test"]])
    write_text(roc_path(name), _csv(["fpr", "tpr"], [[f"{f:.5f}", f"{t:.5f}"] for f, t in zip(fpr, tpr)]))
    log.info("%s: %s", name, ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if not isinstance(v, bool)))
    run.log_metrics({k: float(v) for k, v in metrics.items()})
    run.log_artifact(evaluation_path(name), "metrics")
    run.log_artifact(roc_path(name), "plots")


def roc_path(name: str) -> Path:
    return PLOTS_DIR / "roc" / f"{name}.csv"


REPORT_COLUMNS = {"forget_acc": "forget acc", "retain_acc": "retain acc", "test_acc": "test acc",
                  "mia_rmia_auc": "RMIA AUC", "mia_rmia_tpr_at_1fpr": "RMIA TPR@1%FPR", "avg_gap": "Avg Gap",
                  "mia_lira_auc": "LiRA AUC", "mia_svc": "MIA-efficacy (SVC)", "avg_gap_svc": "Avg Gap (SVC)",
                  "runtime_s": "runtime (s)", "runtime_vs_retrain": "runtime / retrain"}


def report(params: Params, run: TrackedRun, *models: str) -> None:
    """Each model's metrics beside the retrained model's: ``metrics/<model>.json`` with
    ``avg_gap`` (accuracies + RMIA AUC, as in the thesis), ``avg_gap_svc`` (accuracies +
    MIA-efficacy, as in SalUn) and ``runtime_vs_retrain`` added; tables in the layout of
    AMUN's Table 1 (split by whether the method reads the remain set) in
    ``reports/results.md`` and ``reports/index.html`` (with the RMIA ROC curves), and a
    bar-plot CSV of the accuracies."""
    from unlearn.evaluation.gap import ACCURACY_KEYS, SVC_KEYS, avg_gap

    names = models or ("original", "retrain")
    results = {name: read_json(evaluation_path(name)) for name in names}
    reference = results.get("retrain")
    if reference:
        for metrics in results.values():
            metrics.update(avg_gap=round(avg_gap(metrics, reference), 4),
                           avg_gap_svc=round(avg_gap(metrics, reference, SVC_KEYS), 4),
                           runtime_vs_retrain=round(metrics["runtime_s"] / reference["runtime_s"], 4))
    for name, metrics in results.items():
        write_json(metrics_path(name), metrics)
    others = [name for name in results if name != "retrain"]
    groups = {"With remain access": [n for n in others if results[n].get("remain_access", True)],
              "Without remain access": [n for n in others if results[n].get("remain_access") is False]}
    header = ["model", *REPORT_COLUMNS.values()]
    tables = [(title, header, [_report_row(n, results[n]) for n in ["retrain"] * bool(reference) + members])
              for title, members in groups.items() if members]
    write_text(REPORTS_DIR / "results.md", "# Results\n\n" + REPORT_NOTE + "\n\n" + "\n\n".join(
        f"## {title}\n\n" + _markdown_table(head, rows) for title, head, rows in tables) + "\n")
    write_text(REPORTS_DIR / "index.html", _html_report(tables, names, run))
    bars = [[f"{name} {key.removesuffix('_acc')}", f"{metrics[key]:.4f}"]
            for name, metrics in results.items() for key in ACCURACY_KEYS]
    write_text(REPORTS_DIR / "accuracy.csv", _csv(["model_split", "accuracy"], bars))
    if reference:
        run.log_metrics({f"{key}.{name}": m[key] for name, m in results.items()
                         for key in ("avg_gap", "avg_gap_svc", "runtime_vs_retrain")})
    for path in ("results.md", "index.html", "accuracy.csv"):
        run.log_artifact(REPORTS_DIR / path, "report")


REPORT_NOTE = ("Accuracies in percent. RMIA and LiRA AUC: how well the attack (with the reference models) "
               "tells forget samples from test samples, in percent (50 = not at all: the retrained model's "
               "value is the target); TPR at 1% FPR likewise. MIA-efficacy (SalUn's SVC attack on confidence): "
               "percent of forget samples it calls non-members. Avg Gap: mean absolute difference to the "
               "retrained model over forget, remain and test accuracy and RMIA AUC (the thesis's; 0 is ideal); "
               "Avg Gap (SVC) uses MIA-efficacy instead. Runtime: wall-clock time of the stage that built the "
               "model (AMUN's includes building its adversarial set).")


def _html_report(tables: list, names: tuple[str, ...], run: TrackedRun) -> str:
    """The report as one HTML page, with the RMIA ROC curves of every model (also logged to MLflow)."""
    import numpy as np

    from pipeline.html_report import png_bytes, render

    with _figure("roc_rmia.png", run) as (fig, ax):
        for name in names:
            rows = np.loadtxt(roc_path(name), delimiter=",", skiprows=1, ndmin=2)
            ax.plot(rows[:, 0], rows[:, 1], label=name, lw=2.5 if name == "retrain" else 1.2)
        ax.plot([1e-3, 1], [1e-3, 1], "k:", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="false positive rate", ylabel="true positive rate",
               title="RMIA, forget vs test")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figure = png_bytes(fig)
    return render("Unlearning results", REPORT_NOTE, tables,
                  [("RMIA ROC curves, forget (members) vs test (non-members), log-log", figure)])


def _report_row(name: str, metrics: dict) -> list[str]:
    return [name, *(f"{metrics[key]:.2f}" if key in metrics else "-" for key in REPORT_COLUMNS)]


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(row) + " |" for row in rows])


@contextlib.contextmanager
def _figure(filename: str, run: TrackedRun):
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


def _csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@dataclass(frozen=True)
class Stage:
    fn: Callable
    sections: tuple[str, ...]  # the params sections the stage reads (dvc.yaml lists the same)
    untracked: tuple[str, ...] = ()  # sections it reads that cannot change its results (not in dvc.yaml)


STAGES: dict[str, Stage] = {
    "prepare": Stage(prepare, ("seed", "data")),
    "train": Stage(train, ("seed", "model", "train", "lipschitz")),
    "retrain": Stage(retrain, ("seed", "model", "train", "lipschitz")),
    "transfer": Stage(transfer, ("seed", "model", "train", "lipschitz", "transfer")),
    "adversarial": Stage(adversarial, ("seed", "model", "adversarial")),
    "unlearn": Stage(unlearn, ("seed", "model", "unlearn.${key}")),
    "references": Stage(references, ("seed", "model", "train", "lipschitz", "references"), ("execution",)),
    "evaluate": Stage(evaluate, ("seed", "model", "evaluate", "mia")),
    "report": Stage(report, ()),
    "retrain_class": Stage(retrain_class, ("seed", "model", "train", "lipschitz", "class_track"), ("execution",)),
    "unlearn_class": Stage(unlearn_class, ("seed", "model", "class_track.forget_class", "unlearn_class.${item}")),
    "evaluate_class": Stage(evaluate_class, ("seed", "model", "evaluate", "mia", "class_track", "mia_nn")),
    "tune": Stage(tune, ("model", "train", "lipschitz", "data", "adversarial", "unlearn", "sweep.methods",
                         "sweep.lr_grid", "sweep.tuning_seed", "sweep.tuning_forget_seed")),
    "sweep_cell": Stage(sweep_cell, ("model", "train", "lipschitz", "data", "adversarial", "unlearn", "sweep.methods")),
    "sweep_report": Stage(sweep_report, ("sweep.seeds", "sweep.forget_seeds")),
}
