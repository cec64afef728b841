"""The class track's stages: forget every training sample of one class.

``retrain_class`` trains ``class_track.retrain_seeds`` models without the class (the gold
standard; jobs through :mod:`unlearn.execution`), ``unlearn_class@<method>`` unlearns it
from the original model with a method of the registry, and ``evaluate_class`` measures
every model (accuracies, MIA-NN, TV distance to the retrained models, RMIA on the
forgotten class, where its inputs go) and writes the comparison with retrain:
``metrics/class/<model>.json``, ``reports/class_results.md`` and ``reports/class.html``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.tracking import TrackedRun
from unlearn.config import Params
from unlearn.errors import ConfigError
from unlearn.io import read_json, save_tensors, write_json, write_text

if TYPE_CHECKING:
    import numpy as np

    from pipeline.stages import Prepared

CLASS_METRICS = Path("metrics/class")


def retrain_name(k: int) -> str:
    """The name under ``data/models`` of the class track's k-th retrained model."""
    return f"class/retrain/seed_{k}"


def class_model(name: str) -> str:
    """The name under ``data/models`` of class-track model ``name`` (the original is shared)."""
    return name if name == "original" else f"class/{name}"


def class_split(data: Prepared, params: Params) -> dict[str, np.ndarray]:
    """The class track's forget / remain / test / forget_test indices (see ``class_splits``)."""
    from unlearn.data import class_splits

    return class_splits(data.labels.numpy(), data.splits["train"], data.splits["test"],
                        params.class_track.forget_class)


def retrain_seed(seed: int, k: int) -> int:
    """Weight-init and batch-order seed of the k-th retrained model (k = 0 is ``seed`` itself)."""
    return seed + k


def retrain_class(params: Params, run: TrackedRun) -> None:
    """The gold standard of the class track: ``retrain_seeds`` models trained from scratch
    (the ``train`` recipe) on every train sample outside the forgotten class."""
    from pipeline.stages import remove_checkpoints, runtime_path
    from unlearn.execution import Job, run_jobs

    seeds = params.class_track.retrain_seeds
    jobs = [Job(train_class_retrain, {"k": k, "params_file": "params.yaml", "parent_run_id": run.run_id},
                name=f"retrain_class {k}") for k in range(seeds)]
    seconds = run_jobs(jobs, workers=params.execution.workers, retries=params.execution.retries,
                       address=params.execution.address)
    remove_checkpoints(*(f"retrain_class {k}" for k in range(seeds)))
    mean = sum(seconds) / len(seconds)
    write_json(runtime_path("class/retrain"), {"runtime_s": round(mean, 3), "seeds": seeds})
    run.log_metrics({"runtime_s": mean, "seeds": seeds})


def train_class_retrain(k: int, params_file: str, parent_run_id: str | None) -> float:
    """Job: train retrained model ``k`` of the class track; returns its training seconds."""
    import time

    from pipeline.stages import _train_model, load_prepared, model_path
    from unlearn.config import load_params
    from unlearn.training import resumed_seconds

    params = load_params(params_file)
    data = load_prepared()
    split = class_split(data, params)
    sections = {"class_track": params.class_track.model_dump(), "train": params.train.model_dump(), "seed_index": k}
    with TrackedRun(f"retrain_class/{k}", sections, tags={"unlearn.job": "retrain_class", "seed_index": str(k)},
                    parent=parent_run_id) as run:
        start = time.perf_counter()
        model, history = _train_model(f"retrain_class {k}", params, data, split["remain"], run,
                                      seed=retrain_seed(params.seed, k))
        seconds = time.perf_counter() - start + resumed_seconds(history)
        save_tensors(model_path(retrain_name(k)), model.state_dict())
        run.log_metrics({"runtime_s": seconds})
    return seconds


def unlearn_class(params: Params, run: TrackedRun, method_name: str) -> None:
    """Unlearn class ``class_track.forget_class`` from the original model with ``method_name``
    (settings ``unlearn_class.<method>``): ``data/models/class/<method>.pt`` and its runtime."""
    import time

    import torch

    from pipeline.stages import load_model, load_prepared, model_path, runtime_path
    from unlearn.unlearning import METHODS, ForgetTask

    method = METHODS.get(method_name)
    if "class" not in method.tracks:
        raise ConfigError(f"unlearn_class: method {method_name!r} is not a class-unlearning method")
    cfg = getattr(params.unlearn_class, method_name)
    data = load_prepared()
    split = class_split(data, params)
    model = load_model("original", params, data.meta)
    task = ForgetTask(data.images, data.labels, torch.as_tensor(split["forget"]), torch.as_tensor(split["remain"]),
                      len(data.meta["classes"]))
    start = time.perf_counter()
    method.run(model, task, cfg, torch.Generator().manual_seed(params.seed))
    seconds = time.perf_counter() - start
    name = class_model(method_name)
    save_tensors(model_path(name), model.state_dict())
    write_json(runtime_path(name), {"runtime_s": round(seconds, 3), "remain_access": method.remain_access(cfg)})
    run.log_metrics({"runtime_s": seconds})
    run.log_artifact(model_path(name), "model")


REPORT_COLUMNS = {"forget_acc": "forget acc", "forget_test_acc": "forget test acc", "retain_acc": "retain acc",
                  "test_acc": "test acc", "mia_nn": "MIA-NN AUC", "mia_nn_gap": "MIA-NN gap",
                  "tv_to_retrain": "TV to retrain", "to_nearest": "to n(f) %", "mia_rmia_auc": "RMIA AUC",
                  "avg_gap": "Avg Gap", "runtime_s": "runtime (s)", "runtime_vs_retrain": "runtime / retrain"}


def evaluate_class(params: Params, run: TrackedRun, *models: str) -> None:
    """Every class-track model (``original``, ``retrain`` and the unlearned ones) measured
    and compared with the retrained models: ``metrics/class/<model>.json`` with
    ``mia_nn_gap``, ``avg_gap`` (forget / retain / test accuracy and MIA-NN AUC) and
    ``runtime_vs_retrain`` added, the table ``reports/class_results.md``, the page
    ``reports/class.html`` and where the forgotten class goes (``plots/class/destinations.csv``).

    Retrain's row is the mean over its seeds; each seed is measured against the others
    (its ``tv_to_retrain`` is the distance between retrained models: the noise floor)."""
    import numpy as np
    import torch

    from pipeline.references import load_references
    from pipeline.stages import load_model, load_prepared, runtime_path
    from unlearn.evaluation import predict
    from unlearn.evaluation.class_track import class_metrics, destinations, forget_inputs
    from unlearn.evaluation.gap import CLASS_KEYS, avg_gap
    from unlearn.evaluation.mia_nn import nearest_class
    from unlearn.unlearning.trw import class_similarity, final_linear
    from unlearn.evaluation.roc import roc_metrics
    from unlearn.evaluation.suite import attack_scores

    data = load_prepared()
    split = class_split(data, params)
    keep, reference_logits = load_references(len(data.labels))
    inputs = forget_inputs(split)
    batch = params.evaluate.batch_size

    def measure(logits: torch.Tensor, retrained_probs: list) -> dict:
        metrics = class_metrics(logits, data.labels, split, retrained_probs, params.class_track.forget_class,
                                params.mia_nn, params.seed)
        scores = attack_scores(logits, reference_logits, keep, data.labels, data.splits["test"], params.mia,
                               params.seed, attacks=("rmia",))["rmia"]
        metrics["mia_rmia_auc"] = roc_metrics(scores[split["forget"]], scores[split["forget_test"]], seed=params.seed,
                                              repeats=params.mia.repeats)["auc"]
        return metrics

    retrained = [predict(load_model(retrain_name(k), params, data.meta), data.images, batch)
                 for k in range(params.class_track.retrain_seeds)]
    retrained_probs = [torch.softmax(logits[inputs].double(), 1).numpy() for logits in retrained]
    per_seed = [measure(logits, retrained_probs[:k] + retrained_probs[k + 1:]) for k, logits in enumerate(retrained)]
    results = {"retrain": {**{key: float(np.mean([m[key] for m in per_seed])) for key in per_seed[0]},
                           **{f"{key}_std": float(np.std([m[key] for m in per_seed])) for key in per_seed[0]},
                           "seeds": len(per_seed)}}
    where = {"retrain": np.mean([destinations(logits, inputs) for logits in retrained], axis=0)}
    original = load_model("original", params, data.meta)
    for name in (m for m in models if m != "retrain"):
        model = original if name == "original" else load_model(class_model(name), params, data.meta)
        logits = predict(model, data.images, batch)
        results[name] = measure(logits, retrained_probs)
        where[name] = destinations(logits, inputs)
    reference = results["retrain"]
    for name, metrics in results.items():
        metrics.update(read_json(runtime_path(class_model(name))))
        metrics.update(mia_nn_gap=abs(metrics["mia_nn"] - reference["mia_nn"]),
                       avg_gap=avg_gap(metrics, reference, CLASS_KEYS))
    for name, metrics in results.items():
        metrics["runtime_vs_retrain"] = metrics["runtime_s"] / reference["runtime_s"]
        rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
        write_json(CLASS_METRICS / f"{name}.json", rounded)
        run.log_metrics({f"{k}.{name}": float(v) for k, v in metrics.items() if not isinstance(v, bool)})
    forget_class = params.class_track.forget_class
    trw = params.unlearn_class.trw
    landmarks = {"nearest_class": nearest_class(retrained_probs, forget_class),
                 "head_similar_class": int(class_similarity(final_linear(original).weight, forget_class,
                                                            pca_dim=trw.pca_dim, temperature=trw.temperature).argmax())}
    write_json(CLASS_METRICS / "classes.json", landmarks)
    run.log_metrics(landmarks)
    _write_class_report(results, where, data.meta["classes"], forget_class, landmarks, run)


def _write_class_report(results: dict, where: dict, classes: list, forget_class: int, landmarks: dict,
                        run: TrackedRun) -> None:
    from pipeline.html_report import png_bytes, render
    from pipeline.stages import PLOTS_DIR, REPORTS_DIR, _csv, _figure, _markdown_table

    note = (f"Class track: forgetting class {forget_class} ({classes[forget_class]}). Accuracies in percent; "
            f"forget / retain accuracy on the train samples of the forgotten / remaining classes, test accuracy "
            f"on the remaining classes' test samples. MIA-NN AUC: how well an SVM on the probabilities of the "
            f"forgotten class's nearest classes tells its train samples from its test samples (retrain's value "
            f"is the target; MIA-NN gap: the distance to it). TV to retrain: mean total variation to the "
            f"retrained models' mean output on the forgotten class's inputs (0-1; retrain's own value is the "
            f"distance between retrained seeds). to n(f): percent of those inputs predicted as the class the "
            f"retrained models send them to most. Avg Gap: mean absolute difference to retrain over forget, "
            f"retain and test accuracy and MIA-NN AUC. Retrain: the mean over {results['retrain']['seeds']} seeds. "
            f"The retrained models send the class mostly to class {classes[landmarks['nearest_class']]} (n(f)); "
            f"the original model's classifier weights rank class {classes[landmarks['head_similar_class']]} as "
            f"most similar to it (where TRW's tilt sends it).")
    header = ["model", *REPORT_COLUMNS.values()]
    rows = [[name, *(f"{m[key]:.3f}" if key == "tv_to_retrain" else f"{m[key]:.2f}" for key in REPORT_COLUMNS)]
            for name, m in results.items()]
    table = _markdown_table(header, rows)
    write_text(REPORTS_DIR / "class_results.md", f"# Class unlearning\n\n{note}\n\n{table}\n")
    write_text(PLOTS_DIR / "class" / "destinations.csv", _csv(
        ["model", "class", "model_class", "share"],
        [[name, classes[c], f"{name} -> {classes[c]}", f"{share[c]:.2f}"] for name, share in where.items()
         for c in range(len(classes))]))
    with _figure("class_destinations.png", run) as (fig, ax):
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
        figure = png_bytes(fig)
    write_text(REPORTS_DIR / "class.html", render("Class unlearning", note, [("Results", header, rows)],
                                                  [("Where the forgotten class's inputs go", figure)]))
    for path in (REPORTS_DIR / "class_results.md", REPORTS_DIR / "class.html",
                 PLOTS_DIR / "class" / "destinations.csv"):
        run.log_artifact(path, "report")
