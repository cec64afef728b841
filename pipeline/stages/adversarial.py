"""Stage ``adversarial``: AMUN's D_A from the original model and the forget set."""

from __future__ import annotations

import logging
import time

from unlearn.config import Params
from unlearn.io import save_tensors, write_json
from unlearn_pipeline.common import ADVERSARIAL, METRICS_DIR, load_prepared, stage_device
from unlearn_pipeline.model_store import load_model
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun
from unlearn_pipeline.ulira import save_shadow_adversarial

log = logging.getLogger(__name__)


@stage("adversarial", ("seed", "model", "adversarial", "ulira.shadows", "execution.precision"))
def adversarial(params: Params, run: TrackedRun) -> None:
    """AMUN's D_A: an adversarial example of every forget sample against the original model,
    at (close to) the smallest L2 budget on a doubling grid, labelled with the model's prediction;
    and the same for each random-track U-LiRA shadow (:func:`unlearn_pipeline.ulira.save_shadow_adversarial`),
    built here once instead of in each of AMUN's variants' stages."""
    import torch

    from unlearn.attacks import adversarial_set, choose_eps_init, input_diameter
    from unlearn.training import to_float

    cfg = params.adversarial
    data = load_prepared(stage_device(params))
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
               "calibration_seconds": round(calibration_s, 3),
               "eps_cap": min(eps_init * 2 ** cfg.max_doublings, input_diameter(x)),
               "samples_per_s": round(len(forget) / seconds, 1), "capped": int(found.capped.sum()),
               "capped_ids": forget[found.capped.cpu()].tolist(),
               "already_misclassified": int((found.eps == 0).sum()),
               "distance_median": round(found.distance.median().item(), 4),
               "eps_counts": {f"{b:.4g}": int(c) for b, c in zip(budgets.tolist(), counts.tolist())}}
    write_json(METRICS_DIR / "adversarial.json", metrics)
    if metrics["capped"]:
        log.warning("%d forget samples stayed correctly classified up to eps %.3g (ids in %s): AMUN leaves "
                    "them out of D_A and keeps their forget rows", metrics["capped"], metrics["eps_cap"],
                    METRICS_DIR / "adversarial.json")
    log.info("D_A: %d samples in %.2f s (%.0f/s), eps_init %.3f, budgets %s", len(forget), seconds,
             metrics["samples_per_s"], eps_init, metrics["eps_counts"])
    start = time.perf_counter()
    save_shadow_adversarial(params, data)
    log.info("D_A of %d U-LiRA shadows in %.2f s", params.ulira.shadows, time.perf_counter() - start)
    run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    run.log_artifact(METRICS_DIR / "adversarial.json", "metrics")
