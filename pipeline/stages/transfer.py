"""Stage ``transfer@<seed>`` (studies/dvc.yaml): smoothness vs adversarial transferability (F3).

For one model seed, a source and a target model per Lipschitz target
(``transfer.targets``), BatchNorm removed and FastClip with ``bn: remove``
(:func:`unlearn_pipeline.cells.smooth_params`), so that each model's bound is the
product of its clipped layers; each model's bound is recorded and checked. L2 and
L-infinity PGD on each source, scored on every target: ``data/transfer/seed<seed>.json``
(``findings`` aggregates the seeds into ``metrics/transfer.json`` and the heat maps)."""

from __future__ import annotations

import logging
from pathlib import Path

from unlearn.config import Params
from unlearn.errors import ConfigError
from unlearn.io import write_json
from unlearn_pipeline.cells import smooth_params, target_label
from unlearn_pipeline.common import load_prepared, remove_checkpoints, stage_device
from unlearn_pipeline.fitting import train_model
from unlearn_pipeline.stages import STUDY_THREADS, stage
from unlearn_pipeline.tracking import TrackedRun

log = logging.getLogger(__name__)

TRANSFER = Path("data/transfer")
SMOOTH_TOLERANCE = 1.05  # a model is smooth when its bound is within 5% of target^(clipped layers)


def transfer_path(seed: int) -> Path:
    return TRANSFER / f"seed{seed}.json"


@stage("transfer", ("model", "train", "lipschitz", "transfer", "execution.precision"), threads=STUDY_THREADS)
def transfer(params: Params, run: TrackedRun, seed: str) -> None:
    """One seed's source and target model per Lipschitz target, their bounds, and the
    transfer-rate matrices of L2 and L-infinity PGD (``rate``, ``rate_unconditional`` and the
    chance level ``rate_random``,
    see :func:`unlearn.evaluation.transfer.transfer_matrix`)."""
    import numpy as np
    import torch

    from unlearn.attacks import pgd_l2, pgd_linf
    from unlearn.evaluation.transfer import transfer_matrix
    from unlearn.training import to_float

    if not seed.isdigit():
        raise ConfigError(f"transfer: takes <seed> as an integer >= 0; got {seed!r}")
    seed_value = int(seed)
    cfg = params.transfer
    data = load_prepared(stage_device(params))
    sources, targets, models, trained = {}, {}, {}, []
    for target in cfg.targets:
        label = target_label(target)
        setting = smooth_params(params, target)
        setting = setting.model_copy(update={"train": params.train.model_copy(update={"epochs": cfg.epochs})})
        for role, offset, chosen in (("source", 0, sources), ("target", 1, targets)):
            name = f"transfer seed{seed_value} {role}.{label}"
            model, _ = train_model(name, setting, data, data.splits["train"], run, seed=10 * seed_value + offset,
                                   metric_prefix=f"{role}.{label}.")
            trained.append(name)
            chosen[label] = model
            models[f"{role}.{label}"] = smoothness_record(model, data, target)
    rng = np.random.default_rng([seed_value, 2])
    test = data.splits["test"]
    chosen_idx = torch.as_tensor(np.sort(rng.choice(test, size=len(test) if cfg.samples is None else min(cfg.samples, len(test)), replace=False)))
    x, y = to_float(data.images[chosen_idx]), data.labels[chosen_idx].to(data.images.device)
    start = torch.Generator().manual_seed(seed_value)
    attacks = {"l2": lambda m, i, t: pgd_l2(m, i, t, eps=cfg.eps, steps=cfg.steps),
               "linf": lambda m, i, t: pgd_linf(m, i, t, eps=cfg.eps_linf, steps=cfg.steps_linf, generator=start)}
    noise = torch.Generator().manual_seed(seed_value + 1)
    matrices = {norm: _rounded(transfer_matrix(sources, targets, x, y, attack, norm, noise))
                for norm, attack in attacks.items()}
    write_json(transfer_path(seed_value), {"seed": seed_value, "samples": len(chosen_idx), "models": models,
                                           "eps": {"l2": cfg.eps, "linf": cfg.eps_linf}, **matrices})
    remove_checkpoints(*trained)
    for norm, matrix in matrices.items():
        for source, row in matrix["rate"].items():
            log.info("%s transfer from %s: %s", norm, source, ", ".join(f"{t} {r}%" for t, r in row.items()))
    run.log_metrics({f"transfer.{norm}.{s}.{t}": r for norm, m in matrices.items()
                     for s, row in m["rate"].items() for t, r in row.items() if r is not None})
    run.log_metrics({f"lipschitz_bound.{name}": record["lipschitz_bound"] for name, record in models.items()})


def smoothness_record(model, data, target: float | None) -> dict:
    """A model's test accuracy and Lipschitz bound in pixel space (``lipschitz_bound``) and
    after its fixed input normalisation (``bound_normalised``: the bound times the smallest
    channel std, the part FastClip controls), with ``limit`` = target^(clipped layers) and
    ``smooth``: ``bound_normalised <= 1.05 * limit`` (always true without a target)."""
    import torch

    from unlearn.evaluation import accuracy, predict
    from unlearn.lipschitz import affine_layers, lipschitz_bound

    shape = data.meta["shape"]
    test = torch.as_tensor(data.splits["test"])
    bound = lipschitz_bound(model, shape)[0]
    normalised = bound * min(data.meta["std"])
    clipped = len(affine_layers(model, shape, "remove"))
    limit = None if target is None else target ** clipped
    return {"test_acc": round(accuracy(predict(model, data.images[test]), data.labels[test]), 4),
            "lipschitz_bound": round(bound, 4), "bound_normalised": round(normalised, 4), "clipped_layers": clipped,
            "limit": limit, "smooth": limit is None or normalised <= SMOOTH_TOLERANCE * limit}


def _rounded(matrices: dict) -> dict:
    return {key: {s: {t: round(r, 2) if r == r else None for t, r in row.items()}  # NaN -> null
                  for s, row in m.items()} for key, m in matrices.items()}
