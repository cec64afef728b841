"""The sequential deletion requests scored (stage ``evaluate``): after request i, each method of
``requests.methods`` on every sample forgotten so far (RMIA and LiRA with the reference
models, which trained on random halves of all of train), against the model retrained without
them (stages ``retrain`` and ``requests_retrain``) or, with ``retrain.enabled: false``, the
attacks' reference point: ``metrics/requests.json`` and ``reports/requests.md``."""

from __future__ import annotations

import numpy as np

from unlearn.config import Params
from unlearn.io import load_tensors, read_json, write_json, write_text
from unlearn_pipeline.common import (METRICS_DIR, REPORTS_DIR, REQUESTS, REQUESTS_MODELS, REQUESTS_RETRAINS, Prepared,
                                     forgotten_so_far, load_prepared, load_references, markdown_table, random_model,
                                     runtime_path, stage_device)
from unlearn_pipeline.model_store import load_model
from unlearn_pipeline.scoring import ATTACK_REFERENCE, split_and_attack_metrics

REQUESTS_METRICS = METRICS_DIR / "requests.json"
REQUESTS_REPORT = REPORTS_DIR / "requests.md"
_COLUMNS = {"forget_acc": "forget acc", "retain_acc": "retain acc", "test_acc": "test acc",
            "mia_rmia_auc": "RMIA AUC", "rmia_gap": "RMIA gap", "avg_gap": "Avg Gap", "runtime_s": "runtime (s)"}


def score_requests(params: Params) -> dict[str, list[dict]]:
    """Each method's row after each request (the first: the ``unlearn@<method>`` model; the
    later ones: stage ``requests``'s), written to the metrics file and the report; returned.
    The data and reference logits are loaded only when there are later requests."""
    asked = read_json(REQUESTS)
    results: dict[str, list[dict]] = {}
    if len(asked) > 1:
        data = load_prepared(stage_device(params))
        keep, reference_logits = load_references(len(data.labels))
        forgotten = forgotten_so_far(asked)
        scored = lambda model, i: _scores(model, forgotten[i], data, keep, reference_logits, params)
        references = _references(params, data, len(asked), scored)
        times = read_json(REQUESTS_MODELS / "times.json")
        for name in params.requests.methods:
            model = load_model(random_model(name), params, data.meta)
            seconds = read_json(runtime_path(random_model(name)))["runtime_s"]
            results[name] = [_row(1, asked[0], scored(model, 0), references[0], seconds)]
            for i in range(1, len(asked)):
                model.load_state_dict(load_tensors(REQUESTS_MODELS / f"{name}-{i + 1}.pt"))
                results[name].append(_row(i + 1, asked[i], scored(model, i), references[i], times[name][i - 1]))
    write_json(REQUESTS_METRICS, {"requests": [r["source"] for r in asked], "methods": results})
    write_text(REQUESTS_REPORT, _report(asked, results, params.retrain.enabled))
    return results


def _references(params: Params, data: Prepared, count: int, scored) -> list[dict | None]:
    """Each request's gold standard's scores: retrain (request 1), then stage
    ``requests_retrain``'s model without the union of requests 1..i; None when retraining is off."""
    if not params.retrain.enabled:
        return [None] * count
    model = load_model("retrain", params, data.meta)
    scores = [scored(model, 0)]
    for i in range(1, count):
        model.load_state_dict(load_tensors(REQUESTS_RETRAINS / f"retrain-{i + 1}.pt"))
        scores.append(scored(model, i))
    return scores


def _scores(model, forgotten: np.ndarray, data: Prepared, keep, reference_logits, params: Params) -> dict[str, float]:
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
