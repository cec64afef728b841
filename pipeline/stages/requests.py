"""Stage ``requests``: sequential deletion requests. After the first request (``data.forget``,
unlearned by stage ``unlearn@<method>``), each further list of ``requests.files`` is
unlearned, in order, from the model the previous request left, by each method of
``requests.methods``; after request i the model is scored against a model retrained from
scratch without the union of requests 1..i (or against the attacks' reference point when
``retrain.enabled`` is false): ``metrics/requests.json`` and ``reports/requests.md``."""

from __future__ import annotations

import logging
import time

import numpy as np

from unlearn.config import Params
from unlearn.io import read_json, save_tensors, write_json, write_text
from unlearn_pipeline.common import (METRICS_DIR, REPORTS_DIR, REQUESTS, REQUESTS_MODELS, load_prepared,
                                     load_references, markdown_table, random_model, runtime_path, stage_device)
from unlearn_pipeline.model_store import load_model
from unlearn_pipeline.scoring import ATTACK_REFERENCE, split_and_attack_metrics
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

log = logging.getLogger(__name__)

REQUESTS_METRICS = METRICS_DIR / "requests.json"
REQUESTS_REPORT = REPORTS_DIR / "requests.md"
_COLUMNS = {"forget_acc": "forget acc", "retain_acc": "retain acc", "test_acc": "test acc",
            "mia_rmia_auc": "RMIA AUC", "rmia_gap": "RMIA gap", "avg_gap": "Avg Gap", "runtime_s": "runtime (s)"}


@stage("requests", ("seed", "model", "train", "lipschitz", "retrain", "adversarial", "unlearn", "requests", "mia",
                    "evaluate", "execution.precision"))
def requests(params: Params, run: TrackedRun) -> None:
    """Every further deletion request, applied in order by each method of ``requests.methods``
    (settings ``unlearn.<method>``), scored after each request; see the module docstring.

    AMUN's D_A for request i is built from the model that request i-1 left. Scores use the
    union of the requests so far as the forget set (RMIA and LiRA with the reference models,
    which trained on random halves of all of train)."""
    asked = read_json(REQUESTS)
    results: dict[str, list[dict]] = {}
    if len(asked) > 1:
        data = load_prepared(stage_device(params))
        keep, reference_logits = load_references(len(data.labels))
        forgotten = [np.sort(np.concatenate([r["indices"] for r in asked[:i + 1]])).astype(np.int64)
                     for i in range(len(asked))]
        scored = lambda model, i: _scores(model, forgotten[i], data, keep, reference_logits, params)
        references = _retrained(params, data, forgotten, scored, run)
        for name in params.requests.methods:
            model = load_model(random_model(name), params, data.meta)
            seconds = read_json(runtime_path(random_model(name)))["runtime_s"]
            results[name] = [_row(1, asked[0], scored(model, 0), references[0], seconds)]
            for i in range(1, len(asked)):
                seconds = _apply(name, model, i, asked[i], forgotten[i], data, params)
                results[name].append(_row(i + 1, asked[i], scored(model, i), references[i], seconds))
        log.info("requests: %d after the first, %d samples forgotten in all", len(asked) - 1, len(forgotten[-1]))
    write_json(REQUESTS_MODELS / "index.json", sorted(p.name for p in REQUESTS_MODELS.glob("*.pt")))
    write_json(REQUESTS_METRICS, {"requests": [r["source"] for r in asked], "methods": results})
    write_text(REQUESTS_REPORT, _report(asked, results, params.retrain.enabled))
    run.log_metrics({f"{key}.{name}.request{row['request']}": float(row[key]) for name, rows in results.items()
                     for row in rows for key in ("rmia_gap", "avg_gap") if row.get(key) is not None})
    run.log_artifact(REQUESTS_REPORT, "report")


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


def _retrained(params: Params, data, forgotten: list[np.ndarray], scored, run: TrackedRun) -> list[dict | None]:
    """Each request's gold standard's scores: retrain (request 1), then a model trained from
    scratch without the union of requests 1..i; None for each when retraining is off."""
    from unlearn_pipeline.fitting import train_model

    if not params.retrain.enabled:
        return [None] * len(forgotten)
    scores = [scored(load_model("retrain", params, data.meta), 0)]
    for i in range(1, len(forgotten)):
        start = time.perf_counter()
        model, _ = train_model(f"requests-retrain-{i + 1}", params, data,
                               np.setdiff1d(data.splits["train"], forgotten[i]), run, metric_prefix=f"retrain{i + 1}.")
        save_tensors(REQUESTS_MODELS / f"retrain-{i + 1}.pt", model.state_dict())
        scores.append({**scored(model, i), "runtime_s": time.perf_counter() - start})
    return scores


def _scores(model, forgotten: np.ndarray, data, keep, reference_logits, params: Params) -> dict[str, float]:
    """Accuracies and RMIA / LiRA (forget = every sample forgotten so far, vs test)."""
    from unlearn.evaluation import predict

    splits = {"forget": forgotten, "remain": np.setdiff1d(data.splits["train"], forgotten),
              "test": data.splits["test"]}
    logits = predict(model, data.images, params.evaluate.batch_size)
    return split_and_attack_metrics(logits, splits, data, keep, reference_logits, params)[0]


def _row(request: int, asked: dict, metrics: dict, reference: dict | None, seconds: float) -> dict:
    """One request's line: the method's metrics and its gaps to the reference (retrain's, or an AUC of 50)."""
    from unlearn.evaluation.gap import avg_gap

    row = {"request": request, "source": asked["source"], "samples": len(asked["indices"]),
           **{key: round(float(metrics[key]), 4) for key in ("forget_acc", "retain_acc", "test_acc",
                                                             "mia_rmia_auc", "mia_rmia_auc_ci95", "mia_lira_auc")},
           "runtime_s": round(seconds, 3)}
    row["rmia_gap"] = round(abs(row["mia_rmia_auc"] - (reference or ATTACK_REFERENCE)["mia_rmia_auc"]), 4)
    row["avg_gap"] = None if reference is None else round(avg_gap(metrics, reference), 4)
    if reference is not None:
        row["retrain"] = {key: round(float(reference[key]), 4) for key in ("forget_acc", "retain_acc", "test_acc",
                                                                           "mia_rmia_auc", "mia_rmia_auc_ci95")}
    return row


def _report(asked: list[dict], results: dict[str, list[dict]], retrained: bool) -> str:
    lines = ["# Sequential deletion requests", ""]
    if len(asked) < 2:
        return "\n".join(lines + ["No further requests (params.yaml: requests.files is empty).", ""])
    against = ("a model retrained from scratch without the union of requests 1..i" if retrained else
               "the attacks' reference point, an AUC of 50 (retrain.enabled: false)")
    lines += [f"After request i, each model is scored on every sample forgotten so far, against {against}. "
              "Accuracies and AUCs in percent; RMIA gap: distance of the RMIA AUC (forgotten vs test) to the "
              "reference's; Avg Gap: the mean over forget, retain and test accuracy and RMIA AUC.", ""]
    lines += [f"- request {i + 1}: {len(r['indices'])} samples from {r['source']}" for i, r in enumerate(asked)]
    for name, rows in results.items():
        table = [[str(row["request"]), *(f"{row[key]:.2f}" if row.get(key) is not None else "-" for key in _COLUMNS)]
                 for row in rows]
        lines += ["", f"## {name}", "", markdown_table(["after request", *_COLUMNS.values()], table)]
    return "\n".join(lines) + "\n"
