"""Stage ``audit``: ``reports/audit.html``, the deletion audit of one method's model, for a
reader who is not a machine-learning specialist (a data-protection officer), and
``metrics/audit.json`` with the verdict; both logged to MLflow with the model."""

from __future__ import annotations

import html

import numpy as np

from unlearn.config import Params
from unlearn.io import load_tensors, read_json, write_json, write_text
from unlearn_pipeline.common import (IMPORTED_INFO, METRICS_DIR, REPORTS_DIR, REQUESTS, REQUESTS_MODELS, load_prepared,
                                     metric_cell, metrics_path, random_model, stage_device)
from unlearn_pipeline.html_report import document, table_html
from unlearn_pipeline.model_store import input_example, load_model
from unlearn_pipeline.scoring import ATTACK_REFERENCE
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

AUDIT = REPORTS_DIR / "audit.html"
AUDIT_METRICS = METRICS_DIR / "audit.json"
_LISTED = 200  # samples shown per request; the rest are counted


@stage("audit", ("model", "train", "retrain", "audit", "requests.methods", "execution.precision"))
def audit(params: Params, run: TrackedRun) -> None:
    """The audit of ``audit.method``: what was removed, how, how long it took against retraining,
    the accuracy on the kept data, the membership tests on the forgotten samples against the
    reference, and the verdict with its rule (:func:`verdict`)."""
    method = params.audit.method
    asked = read_json(REQUESTS)
    metrics = {name: read_json(metrics_path(name)) for name in ("original", method)}
    retrained = read_json(metrics_path("retrain")) if params.retrain.enabled else None
    later = read_json(METRICS_DIR / "requests.json")["methods"].get(method, [])[1:]
    removed = list(np.cumsum([len(request["indices"]) for request in asked]))
    checks = verdict(metrics[method], metrics["original"], retrained, later, params, [int(n) for n in removed])
    write_json(AUDIT_METRICS, checks)
    write_text(AUDIT, _page(method, asked, metrics, retrained, later, checks, params))
    data = load_prepared(stage_device(params))
    covered = 1 + len(later)
    model = load_model(random_model(method), params, data.meta)
    if covered > 1:  # the model after the last request, as stage requests left it
        model.load_state_dict(load_tensors(REQUESTS_MODELS / f"{method}-{covered}.pt"))
    run.log_metrics({"forgotten": float(checks["forgotten"]), "rmia_gap": checks["rmia_gap"]})
    run.log_artifact(AUDIT, "audit")
    run.log_artifact(REQUESTS, "audit")
    run.log_model(model, f"unlearn-audited-{method}", input_example(data), tags={
        "audit.requests": str(covered), "audit.answer": checks["answer"],
        "audit.sources": "; ".join(request["source"] for request in asked[:covered]),
        "audit.samples": str(removed[covered - 1])})


ANSWERS = {"inside": "forgotten", "outside": "not forgotten", "undecided": "too few samples to tell"}


def verdict(metrics: dict, original: dict, retrained: dict | None, later: list[dict], params: Params,
            removed: list[int] | None = None) -> dict:
    """The rule, with the uncertainty of each test: "forgotten" when, after every request,
    the whole 95% interval of the RMIA AUC's difference from the reference (retrain's AUC; 50
    without retrain) lies within ``audit.max_auc_gap`` points, U-LiRA's too where measured,
    and the accuracy on the kept data is at most ``audit.max_retain_drop`` points below the
    original model's; "not forgotten" when some interval lies wholly beyond the margin or the
    kept accuracy fell further; "too few samples to tell" otherwise, with about how many
    removed samples would decide it (:func:`unlearn.findings.against_margin`). An AUC's
    interval is its bootstrap half-width over samples; a difference's adds the reference's in
    quadrature. ``removed``: the samples removed so far after each request."""
    from unlearn.findings import against_margin

    cfg = params.audit
    reference = retrained or ATTACK_REFERENCE
    removed = removed or [0] * (1 + len(later))
    rows = [metrics, *later]
    references = [reference, *(row.get("retrain", reference) for row in later)]
    membership = [against_margin(row["mia_rmia_auc"] - ref["mia_rmia_auc"],
                                 float(np.hypot(row.get("mia_rmia_auc_ci95", 0.0), ref.get("mia_rmia_auc_ci95", 0.0))),
                                 cfg.max_auc_gap, n) for row, ref, n in zip(rows, references, removed)]
    ulira = None
    if "ulira_auc" in metrics:
        ulira = against_margin(metrics["ulira_auc"] - reference["ulira_auc"],
                               float(np.hypot(metrics.get("ulira_auc_ci95", 0.0), reference.get("ulira_auc_ci95", 0.0))),
                               cfg.max_auc_gap, removed[0])
    retain_drop = original["retain_acc"] - min([metrics["retain_acc"], *(row["retain_acc"] for row in later)])
    tests = [*membership, *([ulira] if ulira else [])]
    kept = retain_drop <= cfg.max_retain_drop
    answer = ("not forgotten" if not kept or any(t["answer"] == "outside" for t in tests) else
              "forgotten" if all(t["answer"] == "inside" for t in tests) else "too few samples to tell")
    needed = [t["samples_needed"] for t in tests if t["answer"] == "undecided"]
    return {"method": cfg.method, "answer": answer, "forgotten": answer == "forgotten",
            "checks": {"membership": [ANSWERS[t["answer"]] for t in membership],
                       "ulira": None if ulira is None else ANSWERS[ulira["answer"]], "kept_accuracy": kept},
            "membership": membership, "ulira": ulira,
            "samples_needed": None if answer != "too few samples to tell" or None in needed else max(needed),
            "rmia_gap": round(max(abs(t["difference"]) for t in membership), 4),
            "ulira_gap": None if ulira is None else round(abs(ulira["difference"]), 4),
            "retain_drop": round(retain_drop, 4), "reference": "retrain" if retrained else "AUC 50",
            "max_auc_gap": cfg.max_auc_gap, "max_retain_drop": cfg.max_retain_drop}


def _page(method: str, asked: list[dict], metrics: dict, retrained: dict | None, later: list[dict], checks: dict,
          params: Params) -> str:
    m, original = metrics[method], metrics["original"]
    yours = _yours()
    source = f"your checkpoint, {yours}" if yours else "trained by this pipeline"
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
              "<h2>Membership tests on the removed samples</h2>" + _membership_block(m, original, retrained, later,
                                                                                    params)]
    return document(f"Deletion audit: {method}", "\n".join(blocks))


def _verdict_block(checks: dict, params: Params) -> str:
    cfg = params.audit
    word = {"forgotten": "FORGOTTEN", "not forgotten": "NOT FORGOTTEN",
            "too few samples to tell": "TOO FEW SAMPLES TO TELL"}[checks["answer"]]
    reference = ("a model retrained from scratch without them" if checks["reference"] == "retrain" else
                 "a coin flip (no model was retrained: retrain.enabled is false)")
    tests = [("RMIA", t) for t in checks["membership"]] + ([("U-LiRA", checks["ulira"])] if checks["ulira"] else [])
    measured = "; ".join(f"{name} {t['difference']:+.2f} ± {t['ci95']:.2f} points over {t['samples']} samples"
                         for name, t in tests)
    more = ""
    if checks["answer"] == "too few samples to tell":
        more = (f" With about {checks['samples_needed']} removed samples (the differences held where they are) the "
                f"intervals would be narrow enough to decide." if checks["samples_needed"] else
                " A difference sits exactly on the margin: no number of samples decides it.")
    return (f"<h2>Verdict: {word}</h2><p>Rule: the removed samples count as forgotten when the strongest "
            f"membership test here (RMIA, with reference models) tells them from samples the model never saw "
            f"no better than it does for {reference}: the difference of its score (AUC, in percent) from that "
            f"reference, with its 95% interval, lies within {cfg.max_auc_gap:g} points after every request, and "
            f"U-LiRA's too where it ran; and the accuracy on the kept data is at most {cfg.max_retain_drop:g} "
            f"points below the original model's. Not forgotten: an interval lies wholly beyond "
            f"{cfg.max_auc_gap:g} points, or the kept accuracy fell further. Too few samples to tell: otherwise "
            f"(the interval straddles the margin). Here: {measured}; kept-data accuracy "
            f"{_versus(checks['retain_drop'])} the original's.{more} A test that cannot tell is evidence, not "
            f"proof: a stronger attack could.</p>")


def _versus(drop: float) -> str:
    return "the same as" if drop == 0 else f"{abs(drop):.2f} points {'below' if drop > 0 else 'above'}"


def _request_block(i: int, request: dict) -> str:
    labels = request["names"] or [f"sample {index}" for index in request["indices"]]
    shown = ", ".join(html.escape(str(label)) for label in labels[:_LISTED])
    more = f" and {len(labels) - _LISTED} more" if len(labels) > _LISTED else ""
    return (f"<p>Request {i + 1}: <b>{len(labels)} samples</b> from <code>{html.escape(request['source'])}</code> "
            f"(all of them: {REQUESTS}).</p>"
            f"<details><summary>the samples</summary><p>{shown}{more}</p></details>")


def _time_block(m: dict, retrained: dict | None) -> str:
    if retrained is None:
        return (f"<p>Unlearning took {m['runtime_s']:.1f} s. Retraining was not run (retrain.enabled: false), "
                f"so there is no comparison.</p>")
    return (f"<p>Unlearning took {m['runtime_s']:.1f} s; retraining from scratch without the removed samples took "
            f"{retrained['runtime_s']:.1f} s ({m['runtime_s'] / retrained['runtime_s']:.2f} of it).</p>")


def _models(m: dict, original: dict, retrained: dict | None) -> list[tuple[str, dict]]:
    return [("before (original)", original), ("after unlearning", m),
            *([("retrained without them (reference)", retrained)] if retrained else [])]


def _membership_block(m: dict, original: dict, retrained: dict | None, later: list[dict], params: Params) -> str:
    """Each test's AUC after unlearning beside the reference's and the original model's, per
    request, with each request's time, and the recipe the reference models used."""
    reference = "retrained model (reference)" if retrained else "reference point (coin flip)"
    tests = [("RMIA AUC, removed vs never-seen samples", "mia_rmia_auc"),
             ("LiRA AUC (the same reference models)", "mia_lira_auc"),
             *([("U-LiRA AUC (shadow models unlearned the same way)", "ulira_auc")] if "ulira_auc" in m else [])]
    rows = [[name, metric_cell(m, key), metric_cell(retrained, key) if retrained else "50.00",
             metric_cell(original, key)] for name, key in tests]
    rows.append(["RMIA true-positive rate at 1% false positives", f"{m['mia_rmia_tpr_at_1fpr']:.2f}",
                 f"{retrained['mia_rmia_tpr_at_1fpr']:.2f}" if retrained else "1.00",
                 f"{original['mia_rmia_tpr_at_1fpr']:.2f}"])
    text = ("<p>An AUC of 50 means the test cannot tell the removed samples from samples the model never saw; "
            "100 means it always can. The target is the reference's value; the original model (before "
            "unlearning) shows what the test sees when nothing was forgotten. ± is the 95% interval over "
            "samples: how far the AUC could move with other samples of the same size.</p>")
    text += table_html(["test (request 1)", "after unlearning", reference, "original (before)"], rows)
    if later:
        text += "<p>After the later requests (every sample removed so far):</p>" + table_html(
            ["after request", "RMIA AUC", "reference RMIA AUC", "gap to reference", "LiRA AUC",
             "kept-data accuracy", "time (s)"],
            [[str(row["request"]), metric_cell(row, "mia_rmia_auc"),
              metric_cell(row["retrain"], "mia_rmia_auc") if "retrain" in row else "50.00",
              f"{row['rmia_gap']:.2f}", f"{row['mia_lira_auc']:.2f}", f"{row['retain_acc']:.2f}%",
              f"{row['runtime_s']:.1f}"] for row in later])
    return text + _recipe_note(params)


def _yours() -> str | None:
    """The user's imported checkpoint, named by content (``original.checkpoint``'s sha256 and size:
    a moved file re-runs nothing), or None when the pipeline trained the original."""
    info = read_json(IMPORTED_INFO)
    return f"sha256 {info['sha256'][:16]}, {info['bytes']:,} bytes" if info["imported"] else None


def _recipe_note(params: Params) -> str:
    """Where the reference models' training recipe comes from (the user's model may have had another)."""
    t = params.train
    recipe = (f"params.yaml's <code>train</code> section ({t.epochs} epochs, batch {t.batch_size}, learning rate "
              f"{t.lr:g})")
    yours = _yours()
    if yours is None:
        return f"<p>The reference models, the retrained model and the original were all trained with {recipe}.</p>"
    return (f"<p>The original model is yours (the checkpoint with {html.escape(yours)}), trained with "
            f"your own recipe; the reference models and the retrained model were trained by this pipeline with "
            f"{recipe}, which may differ from yours: compare the original's kept-data accuracy with the retrained "
            f"model's above.</p>")
