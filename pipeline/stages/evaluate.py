"""Stage ``evaluate``: every model of the random track against every attack, beside retrain:
``metrics/random/<model>.json``, ``reports/results.md`` and ``reports/index.html``."""

from __future__ import annotations

import logging

from unlearn.config import Params
from unlearn.io import read_json, write_json, write_text
from unlearn_pipeline.common import (INTERVAL_NOTE, MEMORIZATION_SUMMARY, REPORTS_DIR, csv_text, figure, load_prepared,
                                     load_references, markdown_table, metric_cell, metrics_path, random_model, roc_path,
                                     runtime_path, runtime_ratio, stage_device, summary)
from unlearn_pipeline.model_store import load_model
from unlearn_pipeline.requests_scoring import REQUESTS_REPORT, score_requests
from unlearn_pipeline.scoring import ATTACK_REFERENCE, split_and_attack_metrics
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun, log_model_runs
from unlearn_pipeline.ulira import ulira_of

log = logging.getLogger(__name__)


@stage("evaluate", ("seed", "model", "retrain", "evaluate", "mia", "ulira", "requests.methods", "execution.precision"),
       untracked=("unlearn",))
def evaluate(params: Params, run: TrackedRun) -> None:
    """Every model of the random track (original, retrain and each method of ``unlearn``,
    whose sections are read for their names only) measured and set beside retrain (beside the
    attacks' reference point when ``retrain.enabled`` is false); see :func:`measure` and
    :func:`write_report`. Then the later deletion requests' models
    (:func:`unlearn_pipeline.requests_scoring.score_requests`).

    One stage for all models rather than one per model: evaluating a model costs one
    forward pass and the attacks' scoring (well under a second on digits), less than
    starting a stage process, and the models themselves stay cached per method. With
    ``execution.workers`` > 1 (or a Dask ``address``) the models are measured as parallel
    jobs: on CIFAR-10 the attacks' CPU work, not the GPU's forward pass, dominates."""
    names = ("original", *(["retrain"] if params.retrain.enabled else []), *params.unlearn.methods)
    if params.execution.workers == 1 and params.execution.address is None:
        data = load_prepared(stage_device(params))
        keep, reference_logits = load_references(len(data.labels))
        results = {name: measure(name, params, data, keep, reference_logits) for name in names}
    else:
        from unlearn.execution import Job, run_jobs

        jobs = [Job(measure_job, {"name": name, "params_file": "params.yaml"}, name=f"evaluate {name}")
                for name in names]
        results = dict(zip(names, run_jobs(jobs, workers=params.execution.workers,
                                           retries=params.execution.retries, address=params.execution.address)))
    write_report(results, run)
    requests = score_requests(params)
    run.log_metrics({f"{key}.{name}.request{row['request']}": float(row[key]) for name, rows in requests.items()
                     for row in rows for key in ("rmia_gap", "avg_gap") if row.get(key) is not None})
    run.log_artifact(REQUESTS_REPORT, "report")


def measure_job(name: str, params_file: str) -> dict:
    """:func:`measure` of model ``name`` as a job: it loads the params, data and references itself."""
    from unlearn.config import load_params

    params = load_params(params_file)
    data = load_prepared(stage_device(params))
    keep, reference_logits = load_references(len(data.labels))
    return measure(name, params, data, keep, reference_logits)


def measure(name: str, params: Params, data, keep, reference_logits) -> dict:
    """Model ``name`` on forget, remain and test: accuracy (percent), loss, the attacks
    without reference models (SVC MIA-efficacy, loss attack) and RMIA and LiRA with the
    reference models (AUC, TPR at low FPR, an RMIA ROC curve in ``plots/roc/<name>.csv``),
    U-LiRA against the shadows the same method unlearned (the original: against the shadows
    as trained), with the wall-clock time of the stage that built it."""
    from unlearn.evaluation import predict
    from unlearn.evaluation.roc import roc_curve_points

    model = load_model(random_model(name), params, data.meta)
    logits = predict(model, data.images, params.evaluate.batch_size)
    metrics, scores = split_and_attack_metrics(logits, data.splits, data, keep, reference_logits, params)
    metrics.update(ulira_of(logits, name, "random", data, params))
    metrics = {**{k: round(v, 4) for k, v in metrics.items()}, **read_json(runtime_path(random_model(name)))}
    fpr, tpr = roc_curve_points(scores["rmia"][data.splits["forget"]], scores["rmia"][data.splits["test"]])
    write_text(roc_path(name), csv_text(["fpr", "tpr"], [[f"{f:.5f}", f"{t:.5f}"] for f, t in zip(fpr, tpr)]))
    log.info("%s: %s", name, ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()
                                     if isinstance(v, (int, float)) and not isinstance(v, bool)))
    return metrics


SUMMARY = "metrics/summary.json"
SUMMARY_KEYS = {"avg_gap": "avg_gap", "mia_rmia_auc": "rmia_auc", "rmia_gap": "rmia_gap", "test_acc": "test_acc",
                "forget_acc": "forget_acc", "runtime_vs_retrain": "runtime_ratio"}

REPORT_COLUMNS = {"forget_acc": "forget acc", "retain_acc": "retain acc", "test_acc": "test acc",
                  "mia_rmia_auc": "RMIA AUC", "mia_rmia_tpr_at_1fpr": "RMIA TPR@1%FPR", "avg_gap": "Avg Gap",
                  "rmia_gap": "RMIA gap",
                  "mia_lira_auc": "LiRA AUC", "ulira_auc": "U-LiRA AUC", "ulira_gap": "U-LiRA gap",
                  "mia_svc": "MIA-efficacy (SVC)", "avg_gap_svc": "Avg Gap (SVC)",
                  "runtime_s": "runtime (s)", "runtime_vs_retrain": "runtime / retrain"}

REPORT_NOTE = ("Accuracies in percent. RMIA and LiRA AUC: how well the attack (with the reference models) "
               "tells forget samples from test samples, in percent (50 = not at all: the retrained model's "
               "value is the target); TPR at 1% FPR likewise. MIA-efficacy (SalUn's SVC attack on confidence): "
               "percent of forget samples it calls non-members. Avg Gap: mean absolute difference to the "
               "retrained model over forget, remain and test accuracy and RMIA AUC (the thesis's; 0 is ideal); "
               "Avg Gap (SVC) uses MIA-efficacy instead. U-LiRA AUC: how well a per-sample likelihood-ratio "
               "test on shadow models that the same method unlearned tells forget samples from never-seen "
               "ones (retrain's value, about 50, is the target; U-LiRA gap: the distance to it; the metrics "
               "files also keep it signed, ulira_gap_signed, and the distance to 50, ulira_to_50). Runtime: "
               "wall-clock time of the stage that built the model (AMUN's includes building its adversarial "
               "set). " + INTERVAL_NOTE)
NO_RETRAIN_NOTE = ("Retraining is off (retrain.enabled: false): no gold standard exists, so Avg Gap and the "
                   "runtime ratio are not computed; RMIA gap and U-LiRA gap are the distances to the attacks' "
                   "own reference point, an AUC of 50 (forget samples indistinguishable from test samples). "
                   "That point ignores how far a retrained model itself would sit from 50.")


def memorization_table() -> list[tuple[str, list[str], list[list[str]]]]:
    """With ``data.forget.mode: memorized``, the forget set's memorisation scores beside all of
    train's (quantiles and mean, from ``prepare``); else nothing."""
    memorized = read_json(MEMORIZATION_SUMMARY)
    if not memorized["scored"]:
        return []
    quantiles = memorized["quantiles"]
    return [(f"Memorisation of the forget set ({memorized['level']} pool: {memorized['pool']:g} of train)",
             ["samples", *quantiles["train"]],
             [[name, *(f"{value:.3f}" for value in quantiles[name].values())] for name in ("forget", "train")])]


def write_report(results: dict[str, dict], run: TrackedRun) -> None:
    """Each model's metrics beside the retrained model's: ``metrics/<model>.json`` with
    ``avg_gap`` (accuracies + RMIA AUC, as in the thesis), ``avg_gap_svc`` (accuracies +
    MIA-efficacy, as in SalUn) and ``runtime_vs_retrain`` added; tables in the layout of
    AMUN's Table 1 (split by whether the method reads the remain set) in
    ``reports/results.md`` and ``reports/index.html`` (with the RMIA ROC curves), and a
    bar-plot CSV of the accuracies; the track's compact summary for ``dvc exp show``
    (``metrics/summary.json``); every model's metrics to MLflow as a run nested under this
    stage's (:func:`log_model_runs`; not also as ``<metric>.<model>`` here, which filled the
    chart view with 381 one-bar charts)."""
    from unlearn.evaluation.gap import ACCURACY_KEYS, SVC_KEYS, avg_gap

    names = tuple(results)
    reference = results.get("retrain", ATTACK_REFERENCE)
    for metrics in results.values():
        metrics["rmia_gap"] = round(abs(metrics["mia_rmia_auc"] - reference["mia_rmia_auc"]), 4)
        if "retrain" in results:
            ratio = runtime_ratio(metrics["runtime_s"], reference["runtime_s"])
            metrics.update(avg_gap=round(avg_gap(metrics, reference), 4),
                           avg_gap_svc=round(avg_gap(metrics, reference, SVC_KEYS), 4),
                           runtime_vs_retrain=None if ratio is None else round(ratio, 4))
        if "ulira_auc" in metrics:  # the gap, and the signed distances to retrain's AUC and to 50
            signed = metrics["ulira_auc"] - reference["ulira_auc"]
            metrics.update(ulira_gap=round(abs(signed), 4), ulira_gap_signed=round(signed, 4),
                           ulira_to_50=round(metrics["ulira_auc"] - 50.0, 4))
    for name, metrics in results.items():
        write_json(metrics_path(name), metrics)
    write_json(SUMMARY, summary("random", results, SUMMARY_KEYS))
    others = [name for name in results if name != "retrain"]
    groups = {"With remain access": [n for n in others if results[n].get("remain_access", True)],
              "Without remain access": [n for n in others if results[n].get("remain_access") is False]}
    header = ["model", *REPORT_COLUMNS.values()]
    first = ["retrain"] if "retrain" in results else []
    tables = [(title, header, [_report_row(n, results[n]) for n in [*first, *members]])
              for title, members in groups.items() if members] + memorization_table()
    note = REPORT_NOTE if first else f"{REPORT_NOTE} {NO_RETRAIN_NOTE}"
    write_text(REPORTS_DIR / "results.md", "# Results\n\n" + note + "\n\n" + "\n\n".join(
        f"## {title}\n\n" + markdown_table(head, rows) for title, head, rows in tables) + "\n")
    write_text(REPORTS_DIR / "index.html", _html_report(tables, names, note, run))
    bars = [[f"{name} {key.removesuffix('_acc')}", f"{metrics[key]:.4f}"]
            for name, metrics in results.items() for key in ACCURACY_KEYS]
    write_text(REPORTS_DIR / "accuracy.csv", csv_text(["model_split", "accuracy"], bars))
    log_model_runs(run, "random", results)
    for path in ("results.md", "index.html", "accuracy.csv"):
        run.log_artifact(REPORTS_DIR / path, "report")


def _html_report(tables: list, names: tuple[str, ...], note: str, run: TrackedRun) -> str:
    """The report as one HTML page, with the RMIA ROC curves of every model (also logged to MLflow)."""
    import numpy as np

    from unlearn_pipeline.html_report import png_bytes, render

    with figure("roc_rmia.png", run) as (fig, ax):
        for name, (colour, style) in zip(names, curve_styles(len(names))):
            rows = np.loadtxt(roc_path(name), delimiter=",", skiprows=1, ndmin=2)
            ax.plot(rows[:, 0], rows[:, 1], label=name, color=colour, linestyle=style,
                    lw=2.5 if name == "retrain" else 1.2)
        ax.plot([1e-3, 1], [1e-3, 1], "k:", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="false positive rate", ylabel="true positive rate",
               title="RMIA, forget vs test")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figure_png = png_bytes(fig)
    return render("Unlearning results", note, tables,
                  [("RMIA ROC curves, forget (members) vs test (non-members), log-log", figure_png)])


def curve_styles(count: int) -> list[tuple[tuple, str]]:
    """A distinct (colour, line style) per curve: tab10's ten colours solid, then dashed,
    then dotted (30 distinct pairs; matplotlib's default cycle repeats after ten)."""
    from matplotlib import colormaps

    colours = colormaps["tab10"]
    return [(colours(i % 10), ("-", "--", ":")[i // 10 % 3]) for i in range(count)]


def _report_row(name: str, metrics: dict) -> list[str]:
    return [name, *(metric_cell(metrics, key) for key in REPORT_COLUMNS)]
