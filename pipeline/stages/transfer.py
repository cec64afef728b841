"""Stage ``transfer``: smoothness vs adversarial transferability.

A source and a target model per Lipschitz target (``transfer.targets``), L2 PGD on each
source, and the transfer-rate matrix (``metrics/transfer.json``, a heat-map CSV, MLflow)."""

from __future__ import annotations

import logging

from unlearn.config import Params
from unlearn.io import write_json, write_text
from unlearn_pipeline.common import (METRICS_DIR, PLOTS_DIR, csv_text, figure, load_prepared, remove_checkpoints,
                                     stage_device)
from unlearn_pipeline.fitting import train_model
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

log = logging.getLogger(__name__)


@stage("transfer", ("seed", "model", "train", "lipschitz", "transfer", "execution.precision"))
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
    data = load_prepared(stage_device(params))
    recipe = params.train.model_copy(update={"epochs": cfg.epochs})
    sources, targets, summary, trained = {}, {}, {}, []
    for target in cfg.targets:
        label = "none" if target is None else f"L{target:g}"
        clip = (params.lipschitz.model_copy(update={"method": "none"}) if target is None
                else params.lipschitz.model_copy(update={"method": "fastclip", "target": target}))
        setting = params.model_copy(update={"train": recipe, "lipschitz": clip})
        for role, offset, models in (("source", 0, sources), ("target", 1, targets)):
            model, _ = train_model(f"{role}.{label}", setting, data, data.splits["train"], run,
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
    x, y = to_float(data.images[chosen]), data.labels[chosen].to(data.images.device)
    matrices = transfer_matrix(sources, targets, x, y, eps=cfg.eps, steps=cfg.steps)
    rates = matrices["rate"]
    rounded = {key: {s: {t: round(r, 2) if r == r else None for t, r in row.items()}  # NaN -> null
                     for s, row in m.items()} for key, m in matrices.items()}
    write_json(METRICS_DIR / "transfer.json", {"eps": cfg.eps, "samples": len(chosen), "models": summary, **rounded})
    heat = PLOTS_DIR / "transfer.csv"
    write_text(heat, csv_text(["source", "target", "rate"],
                              [[s, t, f"{r:.2f}"] for s, row in rates.items() for t, r in row.items()]))
    remove_checkpoints(*trained)
    for s, row in rates.items():
        log.info("transfer from %s: %s", s, ", ".join(f"{t} {r:.1f}%" for t, r in row.items()))
    run.log_metrics({f"transfer.{s}.{t}": r for s, row in rates.items() for t, r in row.items()})
    run.log_artifact(METRICS_DIR / "transfer.json", "metrics")
    run.log_artifact(heat, "plots")
    names = list(targets)
    grid = np.array([[rates[s][t] for t in names] for s in sources])
    with figure("transfer_heatmap.png", run) as (fig, ax):
        image = ax.imshow(grid, cmap="viridis")
        ax.set(xticks=range(len(names)), xticklabels=names, yticks=range(len(sources)), yticklabels=list(sources),
               xlabel="target model", ylabel="source model", title=f"transfer rate (%), L2 eps {cfg.eps:g}")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="white")
        fig.colorbar(image)
