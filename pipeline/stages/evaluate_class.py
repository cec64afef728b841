"""Stage ``evaluate_class``: every class-track model measured and compared with the retrained
models: ``metrics/class/<model>.json``, ``reports/class_results.md``, ``reports/class.html``."""

from __future__ import annotations

from pathlib import Path

from unlearn.config import Params
from unlearn.io import read_json, write_json, write_text
from unlearn_pipeline.class_track import class_model, class_split, retrain_name
from unlearn_pipeline.common import (INTERVAL_NOTE, PLOTS_DIR, REPORTS_DIR, csv_text, figure, load_prepared,
                                     load_references, markdown_table, metric_cell, runtime_path, runtime_ratio,
                                     stage_device, summary)
from unlearn_pipeline.model_store import load_model
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun, log_model_runs
from unlearn_pipeline.ulira import ulira_of

CLASS_METRICS = Path("metrics/class")


CLASS_SUMMARY = "metrics/class_summary.json"
CLASS_SUMMARY_KEYS = {"avg_gap": "avg_gap", "mia_nn": "mia_nn_auc", "test_acc": "test_acc", "forget_acc": "forget_acc",
                      "runtime_vs_retrain": "runtime_ratio"}

REPORT_COLUMNS = {"forget_acc": "forget acc", "forget_test_acc": "forget test acc", "retain_acc": "retain acc",
                  "test_acc": "test acc", "mia_nn": "MIA-NN AUC", "mia_nn_gap": "MIA-NN gap",
                  "tv_to_retrain": "TV to retrain", "to_nearest": "to n(f) %", "mia_rmia_auc": "RMIA AUC",
                  "ulira_auc": "U-LiRA AUC", "ulira_gap": "U-LiRA gap",
                  "avg_gap": "Avg Gap", "runtime_s": "runtime (s)", "runtime_vs_retrain": "runtime / retrain"}


@stage("evaluate_class", ("seed", "model", "evaluate", "mia", "class_track", "mia_nn", "ulira",
                         "execution.precision"),
       untracked=("unlearn_class",))
def evaluate_class(params: Params, run: TrackedRun) -> None:
    """Every class-track model (``original``, ``retrain`` and the unlearned ones) measured
    and compared with the retrained models: ``metrics/class/<model>.json`` with
    ``mia_nn_gap``, ``avg_gap`` (forget / retain / test accuracy and MIA-NN AUC) and
    ``runtime_vs_retrain`` added, the table ``reports/class_results.md``, the page
    ``reports/class.html`` and where the forgotten class goes (``plots/class/destinations.csv``).

    Retrain's row is the mean over its seeds; each seed is measured against the others
    (its ``tv_to_retrain`` is the distance between retrained models: the noise floor)."""
    import numpy as np
    import torch

    from unlearn.evaluation import predict
    from unlearn.evaluation.class_track import class_metrics, destinations, forget_inputs
    from unlearn.evaluation.gap import CLASS_KEYS, avg_gap
    from unlearn.evaluation.mia_nn import nearest_class
    from unlearn.unlearning.trw import class_similarity, final_linear
    from unlearn.evaluation.roc import roc_metrics
    from unlearn.evaluation.suite import attack_scores

    data = load_prepared(stage_device(params))
    split = class_split(data, params)
    keep, reference_logits = load_references(len(data.labels))
    inputs = forget_inputs(split)
    batch = params.evaluate.batch_size

    def measure(logits: torch.Tensor, retrained_probs: list, kind: str) -> dict:
        metrics = class_metrics(logits, data.labels, split, retrained_probs, params.class_track.forget_class,
                                params.mia_nn, params.seed)
        scores = attack_scores(logits, reference_logits, keep, data.labels, data.splits["test"], params.mia,
                               params.seed, attacks=("rmia",))["rmia"]
        found = roc_metrics(scores[split["forget"]], scores[split["forget_test"]], seed=params.seed,
                            repeats=params.mia.repeats)
        metrics["mia_rmia_auc"], metrics["mia_rmia_auc_ci95"] = found["auc"], found["auc_ci95"]
        return {**metrics, **ulira_of(logits, kind, "class", data, params)}

    retrained = [predict(load_model(retrain_name(k), params, data.meta), data.images, batch)
                 for k in range(params.class_track.retrain_seeds)]
    retrained_probs = [torch.softmax(logits[inputs].double(), 1).numpy() for logits in retrained]
    per_seed = [measure(logits, retrained_probs[:k] + retrained_probs[k + 1:], "retrain")
                for k, logits in enumerate(retrained)]
    results = {"retrain": {**{key: float(np.mean([m[key] for m in per_seed])) for key in per_seed[0]},
                           **{f"{key}_std": float(np.std([m[key] for m in per_seed])) for key in per_seed[0]},
                           "seeds": len(per_seed)}}
    where = {"retrain": np.mean([destinations(logits, inputs) for logits in retrained], axis=0)}
    original = load_model("original", params, data.meta)
    for name in ("original", *params.unlearn_class.methods):
        model = original if name == "original" else load_model(class_model(name), params, data.meta)
        logits = predict(model, data.images, batch)
        results[name] = measure(logits, retrained_probs, name)
        where[name] = destinations(logits, inputs)
    reference = results["retrain"]
    for name, metrics in results.items():
        metrics.update(read_json(runtime_path(class_model(name))))
        metrics.update(mia_nn_gap=abs(metrics["mia_nn"] - reference["mia_nn"]),
                       avg_gap=avg_gap(metrics, reference, CLASS_KEYS))
        if "ulira_auc" in metrics:  # the gap, and the signed distances to retrain's AUC and to 50
            signed = metrics["ulira_auc"] - reference["ulira_auc"]
            metrics.update(ulira_gap=abs(signed), ulira_gap_signed=signed, ulira_to_50=metrics["ulira_auc"] - 50.0)
    for name, metrics in results.items():
        metrics["runtime_vs_retrain"] = runtime_ratio(metrics["runtime_s"], reference["runtime_s"])
        rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
        write_json(CLASS_METRICS / f"{name}.json", rounded)
    forget_class = params.class_track.forget_class
    trw = params.unlearn_class.trw
    landmarks = {"nearest_class": nearest_class(retrained_probs, forget_class),
                 "head_similar_class": int(class_similarity(final_linear(original).weight, forget_class,
                                                            pca_dim=trw.pca_dim, temperature=trw.temperature).argmax())}
    write_json(CLASS_SUMMARY, summary("class", results, CLASS_SUMMARY_KEYS))
    log_model_runs(run, "class", results)
    write_json(CLASS_METRICS / "classes.json", landmarks)
    run.log_metrics(landmarks)
    _write_class_report(results, where, data.meta["classes"], forget_class, landmarks, run)


def _write_class_report(results: dict, where: dict, classes: list, forget_class: int, landmarks: dict,
                        run: TrackedRun) -> None:
    from unlearn_pipeline.html_report import png_bytes, render

    note = (f"Class track: forgetting class {forget_class} ({classes[forget_class]}). Accuracies in percent; "
            f"forget / retain accuracy on the train samples of the forgotten / remaining classes, test accuracy "
            f"on the remaining classes' test samples. MIA-NN AUC: how well an SVM on the probabilities of the "
            f"forgotten class's nearest classes tells its train samples from its test samples (retrain's value "
            f"is the target; MIA-NN gap: the distance to it). TV to retrain: mean total variation to the "
            f"retrained models' mean output on the forgotten class's inputs (0-1; retrain's own value is the "
            f"distance between retrained seeds). to n(f): percent of those inputs predicted as the class the "
            f"retrained models send them to most. Avg Gap: mean absolute difference to retrain over forget, "
            f"retain and test accuracy and MIA-NN AUC. U-LiRA AUC: how well a per-sample likelihood-ratio test on "
            f"shadow models that the same method unlearned tells the class's train samples from its test "
            f"samples (retrain's value, about 50, is the target; U-LiRA gap: the distance to it; the metrics "
            f"files also keep it signed, ulira_gap_signed, and the distance to 50, ulira_to_50). "
            f"Retrain: the mean over {results['retrain']['seeds']} seeds. "
            f"The retrained models send the class mostly to class {classes[landmarks['nearest_class']]} (n(f)); "
            f"the original model's classifier weights rank class {classes[landmarks['head_similar_class']]} as "
            f"most similar to it (where TRW's tilt sends it). {INTERVAL_NOTE}")
    header = ["model", *REPORT_COLUMNS.values()]
    rows = [[name, *(metric_cell(m, key, 3 if key == "tv_to_retrain" else 2) for key in REPORT_COLUMNS)]
            for name, m in results.items()]
    table = markdown_table(header, rows)
    write_text(REPORTS_DIR / "class_results.md", f"# Class unlearning\n\n{note}\n\n{table}\n")
    write_text(PLOTS_DIR / "class" / "destinations.csv", csv_text(
        ["model", "class", "model_class", "share"],
        [[name, classes[c], f"{name} -> {classes[c]}", f"{share[c]:.2f}"] for name, share in where.items()
         for c in range(len(classes))]))
    with figure("class_destinations.png", run) as (fig, ax):
        from matplotlib import colormaps

        left = [0.0] * len(where)
        colours = colormaps["tab20"]
        for c in range(len(classes)):
            shares = [float(share[c]) for share in where.values()]
            ax.barh(list(where), shares, left=left, color=colours(c % 20), label=str(classes[c]),
                    edgecolor="black" if c == forget_class else None)
            left = [a + b for a, b in zip(left, shares)]
        ax.invert_yaxis()
        ax.set(xlabel=f"percent of class {classes[forget_class]}'s inputs predicted as ...",
               title="Where the forgotten class goes")
        ax.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
        fig.tight_layout()
        figure_png = png_bytes(fig)
    write_text(REPORTS_DIR / "class.html", render("Class unlearning", note, [("Results", header, rows)],
                                                  [("Where the forgotten class's inputs go", figure_png)]))
    for path in (REPORTS_DIR / "class_results.md", REPORTS_DIR / "class.html",
                 PLOTS_DIR / "class" / "destinations.csv"):
        run.log_artifact(path, "report")
