"""Stage ``audit``: ``reports/audit.html``, the deletion audit of one method's model, for a
reader who is not a machine-learning specialist (a data-protection officer), and
``metrics/audit.json`` with the verdict; both logged to MLflow with the model."""

from __future__ import annotations

import html

from unlearn.config import Params
from unlearn.io import read_json, write_json, write_text
from unlearn_pipeline.common import (METRICS_DIR, REPORTS_DIR, REQUESTS, load_prepared, metrics_path, random_model,
                                     stage_device)
from unlearn_pipeline.html_report import document, table_html
from unlearn_pipeline.model_store import input_example, load_model
from unlearn_pipeline.scoring import ATTACK_REFERENCE
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

AUDIT = REPORTS_DIR / "audit.html"
AUDIT_METRICS = METRICS_DIR / "audit.json"
_LISTED = 200  # samples shown per request; the rest are counted


@stage("audit", ("model", "retrain", "audit", "requests.methods", "execution.precision"))
def audit(params: Params, run: TrackedRun) -> None:
    """The audit of ``audit.method``: what was removed, how, how long it took against retraining,
    the accuracy on the kept data, the membership tests on the forgotten samples against the
    reference, and the verdict with its rule (:func:`verdict`)."""
    method = params.audit.method
    asked = read_json(REQUESTS)
    metrics = {name: read_json(metrics_path(name)) for name in ("original", method)}
    retrained = read_json(metrics_path("retrain")) if params.retrain.enabled else None
    later = read_json(METRICS_DIR / "requests.json")["methods"].get(method, [])[1:]
    checks = verdict(metrics[method], metrics["original"], retrained, later, params)
    write_json(AUDIT_METRICS, checks)
    write_text(AUDIT, _page(method, asked, metrics, retrained, later, checks, params))
    data = load_prepared(stage_device(params))
    model = load_model(random_model(method), params, data.meta)
    run.log_metrics({"forgotten": float(checks["forgotten"]), "rmia_gap": checks["rmia_gap"]})
    run.log_artifact(AUDIT, "audit")
    run.log_artifact(REQUESTS, "audit")
    run.log_model(model, f"unlearn-audited-{method}", input_example(data))


def verdict(metrics: dict, original: dict, retrained: dict | None, later: list[dict], params: Params) -> dict:
    """The rule: "forgotten" when, after every request, the RMIA AUC (forgotten vs test samples)
    is within ``audit.max_auc_gap`` points of the reference (retrain's AUC; 50 without retrain),
    and U-LiRA's too where measured; and the accuracy on the kept data is at most
    ``audit.max_retain_drop`` points below the original model's."""
    cfg = params.audit
    reference = retrained or ATTACK_REFERENCE
    gaps = [abs(metrics["mia_rmia_auc"] - reference["mia_rmia_auc"]), *(row["rmia_gap"] for row in later)]
    ulira_gap = abs(metrics["ulira_auc"] - reference["ulira_auc"]) if "ulira_auc" in metrics else None
    retain_drop = original["retain_acc"] - min([metrics["retain_acc"], *(row["retain_acc"] for row in later)])
    passed = {"membership": max(gaps) <= cfg.max_auc_gap,
              "ulira": ulira_gap is None or ulira_gap <= cfg.max_auc_gap,
              "kept_accuracy": retain_drop <= cfg.max_retain_drop}
    return {"method": cfg.method, "forgotten": all(passed.values()), "checks": passed,
            "rmia_gap": round(max(gaps), 4), "ulira_gap": None if ulira_gap is None else round(ulira_gap, 4),
            "retain_drop": round(retain_drop, 4), "reference": "retrain" if retrained else "AUC 50",
            "max_auc_gap": cfg.max_auc_gap, "max_retain_drop": cfg.max_retain_drop}


def _page(method: str, asked: list[dict], metrics: dict, retrained: dict | None, later: list[dict], checks: dict,
          params: Params) -> str:
    m, original = metrics[method], metrics["original"]
    source = params.model.checkpoint or "trained by this pipeline"
    blocks = [_verdict_block(checks, params),
              "<h2>What was removed</h2>" + "".join(_request_block(i, r) for i, r in enumerate(asked)),
              f"<h2>How</h2><p>Method <b>{html.escape(method)}</b> (settings: params.yaml, "
              f"<code>unlearn.{html.escape(method)}</code>) changed the model <code>{html.escape(params.model.name)}"
              f"</code> ({html.escape(source)}). The unlearned model is logged with this report in MLflow.</p>",
              "<h2>Time taken</h2>" + _time_block(m, retrained),
              "<h2>Accuracy on the kept data</h2>" + table_html(
                  ["model", "kept (training) data", "test data", "removed samples"],
                  [[name, *(f"{row[key]:.2f}%" for key in ("retain_acc", "test_acc", "forget_acc"))]
                   for name, row in _models(m, original, retrained)]),
              "<h2>Membership tests on the removed samples</h2>" + _membership_block(m, retrained, later)]
    return document(f"Deletion audit: {method}", "\n".join(blocks))


def _verdict_block(checks: dict, params: Params) -> str:
    cfg = params.audit
    word = "FORGOTTEN" if checks["forgotten"] else "NOT SHOWN TO BE FORGOTTEN"
    reference = ("a model retrained from scratch without them" if checks["reference"] == "retrain" else
                 "a coin flip (no model was retrained: retrain.enabled is false)")
    return (f"<h2>Verdict: {word}</h2><p>Rule: the removed samples count as forgotten when the strongest "
            f"membership test here (RMIA, with reference models) tells them from samples the model never saw "
            f"no better than it does for {reference}: its score (AUC, in percent) is within "
            f"{cfg.max_auc_gap:g} points of that reference after every request, and U-LiRA's too where it ran; "
            f"and when the accuracy on the kept data is at most {cfg.max_retain_drop:g} points below the original "
            f"model's. Here: RMIA {checks['rmia_gap']:.2f} points from the reference"
            + (f", U-LiRA {checks['ulira_gap']:.2f}" if checks["ulira_gap"] is not None else "")
            + f"; kept-data accuracy {_versus(checks['retain_drop'])} the original's. A test that cannot "
            f"tell is evidence, not proof: a stronger attack could.</p>")


def _versus(drop: float) -> str:
    return "the same as" if drop == 0 else f"{abs(drop):.2f} points {'below' if drop > 0 else 'above'}"


def _request_block(i: int, request: dict) -> str:
    labels = request["names"] or [f"sample {index}" for index in request["indices"]]
    shown = ", ".join(html.escape(str(label)) for label in labels[:_LISTED])
    more = f" and {len(labels) - _LISTED} more" if len(labels) > _LISTED else ""
    return (f"<p>Request {i + 1}: <b>{len(labels)} samples</b> from <code>{html.escape(request['source'])}</code>: "
            f"{shown}{more} (all of them: data/prepared/requests.json).</p>")


def _time_block(m: dict, retrained: dict | None) -> str:
    if retrained is None:
        return (f"<p>Unlearning took {m['runtime_s']:.1f} s. Retraining was not run (retrain.enabled: false), "
                f"so there is no comparison.</p>")
    return (f"<p>Unlearning took {m['runtime_s']:.1f} s; retraining from scratch without the removed samples took "
            f"{retrained['runtime_s']:.1f} s ({m['runtime_s'] / retrained['runtime_s']:.2f} of it).</p>")


def _models(m: dict, original: dict, retrained: dict | None) -> list[tuple[str, dict]]:
    return [("before (original)", original), ("after unlearning", m),
            *([("retrained without them (reference)", retrained)] if retrained else [])]


def _membership_block(m: dict, retrained: dict | None, later: list[dict]) -> str:
    reference = "retrained model" if retrained else "reference point (coin flip)"
    rows = [["RMIA AUC, removed vs never-seen samples", f"{m['mia_rmia_auc']:.2f}",
             f"{retrained['mia_rmia_auc']:.2f}" if retrained else "50.00"],
            ["RMIA true-positive rate at 1% false positives", f"{m['mia_rmia_tpr_at_1fpr']:.2f}",
             f"{retrained['mia_rmia_tpr_at_1fpr']:.2f}" if retrained else "1.00"]]
    if "ulira_auc" in m:
        rows.append(["U-LiRA AUC (shadow models unlearned the same way)", f"{m['ulira_auc']:.2f}",
                     f"{retrained['ulira_auc']:.2f}" if retrained else "50.00"])
    text = ("<p>An AUC of 50 means the test cannot tell the removed samples from samples the model never saw; "
            "100 means it always can. The target is the reference's value.</p>")
    text += table_html(["test", "after unlearning", reference], rows)
    if later:
        text += "<p>After the later requests (every sample removed so far):</p>" + table_html(
            ["after request", "RMIA AUC", "gap to reference", "kept-data accuracy"],
            [[str(row["request"]), f"{row['mia_rmia_auc']:.2f}", f"{row['rmia_gap']:.2f}", f"{row['retain_acc']:.2f}%"]
             for row in later])
    return text
