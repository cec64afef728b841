"""Stage ``unlearn@<method>``, one per section of params.yaml's ``unlearn``: the forget set
unlearned from the original model by a method of :data:`unlearn.unlearning.METHODS`."""

from __future__ import annotations

import logging
import time

from unlearn.config import Params
from unlearn.errors import DataError
from unlearn.io import load_tensors, save_tensors, write_json
from unlearn_pipeline.common import (ADVERSARIAL, Prepared, load_prepared, model_path, random_model, runtime_path,
                                     stage_device)
from unlearn_pipeline.model_store import input_example, load_model
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun
from unlearn_pipeline.ulira import unlearn_shadows

log = logging.getLogger(__name__)


@stage("unlearn", ("seed", "model", "unlearn.${item}", "adversarial", "ulira.shadows", "execution.precision"))
def unlearn(params: Params, run: TrackedRun, method_name: str) -> None:
    """Unlearn the forget set from the original model with ``method_name`` (a name in
    :data:`unlearn.unlearning.METHODS`, settings ``unlearn.<method>``): the model and its
    runtime (stage ``evaluate`` measures it and compares it with retrain); then U-LiRA's
    shadows of the random track unlearned the same way (:func:`unlearn_shadows`).

    ``runtime_s`` is the method's wall-clock time; for AMUN it includes building D_A
    (stage ``adversarial``, calibration included), which the method needs."""
    import torch

    from unlearn.unlearning import METHODS, ForgetTask

    method = METHODS.get(method_name)
    cfg = getattr(params.unlearn, method_name)
    data = load_prepared(stage_device(params))
    adversarial, adversarial_s = _load_adversarial(data) if method.needs_adversarial else (None, 0.0)
    model = load_model("original", params, data.meta)
    task = ForgetTask(data.images, data.labels, torch.as_tensor(data.splits["forget"]),
                      torch.as_tensor(data.splits["remain"]), len(data.meta["classes"]), adversarial)
    start = time.perf_counter()
    method.run(model, task, cfg, torch.Generator().manual_seed(params.seed))
    seconds = time.perf_counter() - start + adversarial_s
    save_tensors(model_path(random_model(method_name)), model.state_dict())
    write_json(runtime_path(random_model(method_name)), {"runtime_s": round(seconds, 3),
                                           "remain_access": method.remain_access(cfg)})
    log.info("%s: unlearned %d samples in %.2f s", method_name, len(task.forget), seconds)
    run.log_metrics({"runtime_s": seconds})
    run.log_model(model, f"unlearn-{method_name}", input_example(data))
    unlearn_shadows(method_name, cfg, "random", params, data)


def _load_adversarial(data: Prepared):
    """D_A from the adversarial stage, checked against the forget split; with its build time.
    Its capped samples (no adversarial example up to the cap) get no D_A row in AMUN
    (:func:`unlearn.unlearning.methods.amun`); stage ``adversarial`` reports them."""
    import numpy as np

    from unlearn.attacks import AdversarialSet

    blob = load_tensors(ADVERSARIAL)
    if not np.array_equal(blob["indices"].numpy(), data.splits["forget"]):
        raise DataError(f"{ADVERSARIAL}: built for another forget set; re-run `dvc repro adversarial`")
    found = AdversarialSet(blob["images"], blob["labels"], blob["eps"], blob["distance"], blob["capped"])
    return found, float(blob["seconds"])
