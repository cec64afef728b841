"""One cell of the random-track protocol, as the papers repeat it over seeds.

A cell is (model seed, forget-set seed): the splits come from the forget-set seed, the
original and retrained models (the ``train`` recipe; FastClip when ``lipschitz`` asks
for it) and every method's randomness from the model seed. The cell builds AMUN's D_A
from the original model (calibrated as the ``adversarial`` stage does), runs each
method from a copy of the original and measures every
model: accuracies, SalUn's MIA-efficacy and the loss attack, and, when the cell has its
own K reference models (:class:`References`), RMIA and LiRA; then the Avg Gap to the
cell's retrained model, the thesis's (``avg_gap``: accuracies and RMIA AUC) and SalUn's
(``avg_gap_svc``: accuracies and MIA-efficacy).
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from unlearn.checkpoint import EpochCheckpoint
from unlearn.recipe import fit_model
from unlearn.config import MiaConfig, Params


@dataclass
class References:
    """A cell's reference models for RMIA and LiRA: their logits on every sample of the
    dataset (K, N, C) and which samples each trained on (``keep``, K x N bool)."""

    keep: np.ndarray
    logits: torch.Tensor


@dataclass
class CellModels:
    """What every method of a cell starts from."""

    task: object  # unlearn.unlearning.ForgetTask, with D_A
    splits: dict[str, np.ndarray]
    original: torch.nn.Module
    retrain_s: float
    adversarial_s: float
    metrics: dict[str, dict]  # original and retrain, measured
    stats: dict[str, list[float]]  # the normalisation (mean, std) the cell's models were built with
    references: References | None = None
    mia: MiaConfig | None = None  # the attacks' settings (with ``references``)
    seed: int = 0  # RMIA's population draw and the AUC subsamples


def prepare_cell(images: torch.Tensor, labels: torch.Tensor, test_start: int | None, params: Params, seed: int,
                 forget_seed: int, checkpoint: Callable[[str, np.ndarray], EpochCheckpoint] | None = None,
                 device: torch.device = torch.device("cpu"), references: References | None = None,
                 memorization: np.ndarray | None = None) -> CellModels:
    """Splits, original and retrained models (on ``device``), D_A and their metrics for one cell.

    With ``checkpoint``, ``checkpoint(name, train_indices)`` gives the per-epoch checkpoint
    of the ``original`` and the ``retrain`` training (see :func:`unlearn.training.train_`).
    With ``references`` (trained on random halves of all of ``images``, so independent of
    the split), every model of the cell also faces RMIA and LiRA (``params.mia``).
    ``memorization``: every sample's memorisation score (dataset order), for
    ``data.forget.mode: memorized``."""
    from unlearn.attacks import adversarial_set, choose_eps_init
    from unlearn.data import make_splits
    from unlearn.data.splits import train_test_split
    from unlearn.evaluation import predict
    from unlearn.lipschitz import lipschitz_bound
    from unlearn.training import to_float
    from unlearn.unlearning import ForgetTask

    if memorization is not None:
        train, _ = train_test_split(len(labels), seed=forget_seed, test_start=test_start,
                                    test_fraction=params.data.test_fraction)
        memorization = memorization[train]
    split = make_splits(labels.numpy(), seed=forget_seed, forget=params.data.forget, test_start=test_start,
                        test_fraction=params.data.test_fraction, memorization=memorization)
    stats = normalisation(images, split.train)
    num_classes = int(labels.max()) + 1

    def fit(name: str, indices: np.ndarray):
        saved = None if checkpoint is None else checkpoint(name, indices)
        return fit_model(images, labels, indices, params, seed, stats, num_classes, saved, device)

    original, _ = fit("original", split.train)
    retrained, retrain_s = fit("retrain", split.remain)
    splits = split.as_dict()
    cell = CellModels(None, splits, original, retrain_s, 0.0, {}, stats, references, params.mia, seed)
    cell.metrics = {name: {**measure(predict(model, images), labels, cell),
                           "lipschitz_bound": lipschitz_bound(model, tuple(images.shape[1:]))[0]}
                    for name, model in (("original", original), ("retrain", retrained))}
    cfg = params.adversarial
    forget = torch.as_tensor(split.forget)
    x, y = to_float(images[forget]), labels[forget]
    start = time.perf_counter()
    eps_init = choose_eps_init(original, x, y, cfg, seed)
    found = adversarial_set(original, x, y, eps_init=eps_init, steps=cfg.steps, max_doublings=cfg.max_doublings,
                            batch_size=cfg.batch_size)
    cell.adversarial_s = time.perf_counter() - start
    cell.task = ForgetTask(images, labels, forget, torch.as_tensor(split.remain), num_classes, found)
    return cell


def normalisation(images: torch.Tensor, train: np.ndarray) -> dict[str, list[float]]:
    """Per-channel ``mean`` and ``std`` of the training images in [0, 1] (a cell's models normalise with it)."""
    from unlearn.training import to_float

    pixels = to_float(images[torch.as_tensor(train)])
    return {"mean": pixels.mean(dim=(0, 2, 3)).tolist(), "std": pixels.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()}


def measure(logits: torch.Tensor, labels: torch.Tensor, cell: CellModels) -> dict[str, float]:
    """A model's metrics in a cell from its logits on every sample: accuracies, losses,
    MIA-efficacy and the loss attack, plus RMIA and LiRA when the cell has references."""
    from unlearn.evaluation import split_metrics

    metrics = split_metrics(logits, labels, cell.splits, (cell.mia or MiaConfig()).svc_samples)
    if cell.references is not None:
        from unlearn.evaluation.suite import attack_metrics, attack_scores

        refs = cell.references
        scores = attack_scores(logits, refs.logits, refs.keep, labels, cell.splits["test"], cell.mia, cell.seed)
        metrics.update(attack_metrics(scores, cell.splits, cell.mia, cell.seed))
    return metrics


def gaps(metrics: dict, retrain: dict) -> dict[str, float]:
    """``avg_gap_svc`` and, when RMIA was measured, the thesis's ``avg_gap`` to the cell's retrained model."""
    from unlearn.evaluation import avg_gap
    from unlearn.evaluation.gap import SVC_KEYS

    out = {"avg_gap_svc": avg_gap(metrics, retrain, SVC_KEYS)}
    if "mia_rmia_auc" in metrics:
        out["avg_gap"] = avg_gap(metrics, retrain)
    return out


def run_method(cell: CellModels, name: str, cfg, seed: int, clip=None, bound: bool = False) -> dict:
    """Method ``name`` with settings ``cfg`` from a copy of the cell's original model: its
    metrics (:func:`measure`), ``runtime_s`` (D_A's time included for AMUN) and the gaps
    to retrain (:func:`gaps`). ``clip`` (a :class:`unlearn.config.LipschitzConfig`) keeps
    its clipping on during every training the method runs, so that a smooth original stays
    smooth (the official smooth-model runs of AMUN clip while unlearning); ``bound`` (or
    ``clip``) adds the unlearned model's ``lipschitz_bound``."""
    from unlearn.evaluation import predict
    from unlearn.lipschitz import clipping_callbacks, lipschitz_bound
    from unlearn.training import extra_callbacks
    from unlearn.unlearning import METHODS

    method = METHODS.get(name)
    model = copy.deepcopy(cell.original)
    shape = tuple(cell.task.images.shape[1:])
    clipping = contextlib.nullcontext() if clip is None else extra_callbacks(
        lambda m: clipping_callbacks(m, shape, clip, seed))
    start = time.perf_counter()
    with clipping:
        method.run(model, cell.task, cfg, torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - start + (cell.adversarial_s if method.needs_adversarial else 0.0)
    metrics = measure(predict(model, cell.task.images), cell.task.labels, cell)
    if bound or clip is not None:
        metrics["lipschitz_bound"] = lipschitz_bound(model, shape)[0]
    return {**metrics, "runtime_s": seconds, "runtime_vs_retrain": seconds / cell.retrain_s,
            **gaps(metrics, cell.metrics["retrain"]), "remain_access": method.remain_access(cfg)}


def aggregate(values: list[float]) -> dict[str, float]:
    """``mean``, ``std`` (sample) and ``ci95`` (the half-width of the 95% Student-t
    interval of the mean; 0 for a single value) over cells."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return {"mean": float(values.mean()), "std": 0.0, "ci95": 0.0}
    std = float(values.std(ddof=1))
    return {"mean": float(values.mean()), "std": std,
            "ci95": float(stats.t.ppf(0.975, len(values) - 1) * std / np.sqrt(len(values)))}
