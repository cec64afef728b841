"""Stages ``requests`` and ``requests_retrain``: sequential deletion requests. After the first
request (``data.forget``, unlearned by stage ``unlearn@<method>``), each further list of
``requests.files`` is unlearned, in order, from the model the previous request left, by each
method of ``requests.methods`` (``requests``); ``requests_retrain`` trains the gold standard
after each of them, from scratch without the union of requests 1..i (nothing when
``retrain.enabled`` is false). Stage ``evaluate`` scores them
(:mod:`unlearn_pipeline.requests_scoring`). Three stages, not one, so that turning retraining
on or off, or a change to how requests are scored, re-runs no unlearning."""

from __future__ import annotations

import logging
import time

import numpy as np

from unlearn.config import Params
from unlearn.io import read_json, save_tensors, write_json
from unlearn_pipeline.common import (REQUESTS, REQUESTS_MODELS, REQUESTS_RETRAINS, forgotten_so_far, load_prepared,
                                     random_model, stage_device)
from unlearn_pipeline.model_store import load_model
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

log = logging.getLogger(__name__)


@stage("requests", ("seed", "model", "adversarial", "unlearn", "requests", "execution.precision"))
def requests(params: Params, run: TrackedRun) -> None:
    """Every further deletion request, applied in order by each method of ``requests.methods``
    (settings ``unlearn.<method>``): the model after request k in ``data/requests/<method>-<k>.pt``,
    the seconds each took in ``data/requests/times.json``. AMUN's D_A for request k is built
    from the model that request k-1 left."""
    asked = read_json(REQUESTS)
    times: dict[str, list[float]] = {}
    if len(asked) > 1:
        data = load_prepared(stage_device(params))
        forgotten = forgotten_so_far(asked)
        for name in params.requests.methods:
            model = load_model(random_model(name), params, data.meta)
            times[name] = [_apply(name, model, i, asked[i], forgotten[i], data, params) for i in range(1, len(asked))]
        log.info("requests: %d after the first, %d samples forgotten in all", len(asked) - 1, len(forgotten[-1]))
    write_json(REQUESTS_MODELS / "times.json", times)
    write_json(REQUESTS_MODELS / "index.json", sorted(p.name for p in REQUESTS_MODELS.glob("*.pt")))
    run.log_metrics({f"runtime_s.{name}.request{i + 2}": seconds for name, row in times.items()
                     for i, seconds in enumerate(row)})


@stage("requests_retrain", ("seed", "model", "train", "lipschitz", "retrain", "execution.precision"))
def requests_retrain(params: Params, run: TrackedRun) -> None:
    """The gold standard after each further request: ``params.yaml``'s recipe from scratch on
    train without the union of requests 1..k, in ``data/requests_retrain/retrain-<k>.pt``, the
    seconds in ``times.json`` (request 1's is stage ``retrain``'s model)."""
    from unlearn_pipeline.fitting import train_model

    asked = read_json(REQUESTS)
    times: dict[str, float] = {}
    REQUESTS_RETRAINS.mkdir(parents=True, exist_ok=True)
    if params.retrain.enabled and len(asked) > 1:
        data = load_prepared(stage_device(params))
        forgotten = forgotten_so_far(asked)
        for i in range(1, len(asked)):
            start = time.perf_counter()
            kept = np.setdiff1d(data.splits["train"], forgotten[i])
            model, _ = train_model(f"requests-retrain-{i + 1}", params, data, kept, run,
                                   metric_prefix=f"retrain{i + 1}.")
            save_tensors(REQUESTS_RETRAINS / f"retrain-{i + 1}.pt", model.state_dict())
            times[str(i + 1)] = round(time.perf_counter() - start, 3)
    write_json(REQUESTS_RETRAINS / "times.json", times)


def _apply(name: str, model, i: int, request: dict, forgotten: np.ndarray, data, params: Params) -> float:
    """Unlearn request ``i`` (0-based) from ``model`` in place with method ``name``, the remain set
    being train without every sample ``forgotten`` so far; saves the model, returns the seconds taken."""
    import torch

    from unlearn.unlearning import METHODS, ForgetTask
    from unlearn_pipeline.ulira import adversarial_examples

    method, cfg = METHODS.get(name), getattr(params.unlearn, name)
    forget = torch.as_tensor(request["indices"])
    remain = torch.as_tensor(np.setdiff1d(data.splits["train"], forgotten))
    start = time.perf_counter()
    adversarial = adversarial_examples(model, data, forget, params) if method.needs_adversarial else None
    task = ForgetTask(data.images, data.labels, forget, remain, len(data.meta["classes"]), adversarial,
                      holdout=torch.as_tensor(data.splits["test"]))
    method.run(model, task, cfg, torch.Generator().manual_seed(params.seed + i))
    seconds = time.perf_counter() - start
    save_tensors(REQUESTS_MODELS / f"{name}-{i + 1}.pt", model.state_dict())
    log.info("%s: request %d (%d samples) unlearned in %.2f s", name, i + 1, len(forget), seconds)
    return seconds
