"""Stage ``findings`` (studies/dvc.yaml): the thesis's findings F1-F6,
judged by the rules of :mod:`unlearn.findings` from what the studies measured.

- F1 (AMUN has the smallest Avg Gap) and F4 (RMIA is a stronger test than the SVC
  attack): the seed study's cells (``sweep_cell``, ``sweep_method``);
- F2 (smoother models, smaller gap for AMUN): ``smoothness@<seed>``;
- F3 (smoothness raises transferability): ``transfer@<seed>``;
- F5 (MIA-NN exposes prior class-unlearning methods) and F6 (TRW has the smallest MIA-NN
  and U-LiRA gaps): the class study's cells (``class_cell``, ``class_method``).

Writes ``metrics/findings.json``, ``reports/findings.md``, ``reports/study.html`` (the
findings, the smoothness and transfer tables and the heat maps), ``metrics/transfer.json``
and ``metrics/smoothness.json`` (means and 95% intervals over seeds) and the heat-map CSVs
``plots/transfer_<norm>.csv``."""

from __future__ import annotations

from pathlib import Path

from unlearn.config import Params
from unlearn.errors import DataError
from unlearn.io import read_json, write_json, write_text
from unlearn_pipeline.cells import target_label
from unlearn_pipeline.common import METRICS_DIR, PLOTS_DIR, REPORTS_DIR, csv_text, figure, markdown_table
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

SWEEP = Path("data/sweep")
NORMS = {"l2": "L2", "linf": "L-infinity"}


def _read(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"{path}: file not found; run `dvc repro studies/dvc.yaml`")
    return read_json(path)


@stage("findings", ("sweep.seeds", "sweep.forget_seeds", "sweep.methods", "smoothness.targets", "smoothness.seeds",
                    "smoothness.methods", "transfer.targets", "transfer.seeds", "class_sweep.seeds",
                    "class_sweep.classes", "class_sweep.methods"))
def findings(params: Params, run: TrackedRun) -> None:
    from unlearn.findings import (class_study_findings, seed_study_findings, smoother_more_transferable,
                                  smoother_smaller_gap)
    from unlearn_pipeline.class_study import class_cells

    seed_study = seed_study_findings(_sweep_cells(params))
    class_study = class_study_findings(class_cells(params))
    smooth = _smoothness(params)
    transfer = _transfer(params)
    result = {
        "F1": seed_study["F1"],
        "F2": smoother_smaller_gap(smooth["gaps"], smooth["models"]),
        "F3": smoother_more_transferable(transfer["pairs"], transfer["all_smooth"], target_label(None),
                                         target_label(min(t for t in params.transfer.targets if t is not None))),
        "F4": seed_study["F4"],
        **class_study,
    }
    write_json(METRICS_DIR / "findings.json", result)
    write_json(METRICS_DIR / "smoothness.json", smooth["summary"])
    write_json(METRICS_DIR / "transfer.json", transfer["summary"])
    write_text(REPORTS_DIR / "findings.md", _markdown(result, smooth["summary"], transfer["summary"]))
    write_text(REPORTS_DIR / "study.html", _html(result, smooth["summary"], transfer["summary"], run))
    run.log_metrics({f"holds.{key}": {"yes": 1.0, "inconclusive": 0.5, "no": 0.0}[f["holds"]]
                     for key, f in result.items()})
    for path in (METRICS_DIR / "findings.json", REPORTS_DIR / "findings.md", REPORTS_DIR / "study.html"):
        run.log_artifact(path, "report")


def _sweep_cells(params: Params) -> dict[str, list[dict]]:
    """Every model's metrics per cell of the seed study (original and retrain with their gaps)."""
    from unlearn.protocol import gaps

    names = [f"seed{s}-forget{f}" for s in params.sweep.seeds for f in params.sweep.forget_seeds]
    bases = [_read(SWEEP / "cells" / name / "cell.json")["metrics"] for name in names]
    methods = {m: _read(SWEEP / "methods" / f"{m}.json")["cells"] for m in params.sweep.methods}
    return {"original": [{**b["original"], **gaps(b["original"], b["retrain"])} for b in bases],
            "retrain": [{**b["retrain"], "avg_gap": 0.0, "avg_gap_svc": 0.0} for b in bases],
            **{m: [by_cell[name] for name in names] for m, by_cell in methods.items()}}


def _smoothness(params: Params) -> dict:
    """Per target label: each model's Avg Gap per seed, and the summary over seeds."""
    from unlearn.findings import interval

    per_seed = [_read(Path("data/smoothness") / f"seed{s}" / "results.json") for s in params.smoothness.seeds]
    # unclipped first, then from the loosest target to the smoothest (F2 compares the two ends)
    targets = sorted(params.smoothness.targets, key=lambda t: float("-inf") if t is None else -t)
    labels = [target_label(t) for t in targets]
    models = ("original", "retrain", *params.smoothness.methods)
    gaps = {label: {m: [r[label][m]["avg_gap"] for r in per_seed] for m in params.smoothness.methods}
            for label in labels}
    summary = {label: {m: {key: interval([r[label][m][key] for r in per_seed])
                           for key in ("test_acc", "forget_acc", "mia_rmia_auc", "avg_gap", "lipschitz_bound")
                           if key in per_seed[0][label][m]} for m in models} for label in labels}
    bounds = {label: {m: summary[label][m]["lipschitz_bound"]["mean"] for m in ("original", "retrain")}
              for label in labels}
    return {"gaps": gaps, "models": bounds, "summary": {"seeds": len(per_seed), "targets": summary}}


def _transfer(params: Params) -> dict:
    """Transfer rates per norm and (source, target) pair over seeds, and every model's bound."""
    from unlearn.findings import interval

    per_seed = [_read(Path("data/transfer") / f"seed{s}.json") for s in params.transfer.seeds]
    pairs = {norm: {f"{s}->{t}": [r[norm]["rate"][s][t] if r[norm]["rate"][s][t] is not None else float("nan")
                                  for r in per_seed]
                    for s in per_seed[0][norm]["rate"] for t in per_seed[0][norm]["rate"][s]} for norm in NORMS}
    models = {name: {key: interval([r["models"][name][key] for r in per_seed])
                     for key in ("test_acc", "lipschitz_bound", "bound_normalised")} | {
                  "limit": per_seed[0]["models"][name]["limit"],
                  "smooth": all(r["models"][name]["smooth"] for r in per_seed)} for name in per_seed[0]["models"]}
    summary = {"seeds": len(per_seed), "eps": per_seed[0]["eps"], "samples": per_seed[0]["samples"],
               "models": models, "rate": {norm: {pair: interval(v) for pair, v in by_pair.items()}
                                          for norm, by_pair in pairs.items()}}
    for norm, by_pair in summary["rate"].items():
        write_text(PLOTS_DIR / f"transfer_{norm}.csv", csv_text(
            ["source", "target", "rate"], [[*pair.split("->"), f"{v['mean']:.2f}"] for pair, v in by_pair.items()]))
    return {"pairs": pairs, "all_smooth": all(m["smooth"] for m in models.values()), "summary": summary}


def _fmt(stats: dict) -> str:
    return f"{stats['mean']:.2f} ± {stats['ci95']:.2f}"


def _finding_rows(result: dict) -> list[list[str]]:
    return [[key, f["claim"], f["holds"], f["why"] or "-", str(f["cells"])] for key, f in result.items()]


def _tables(result: dict, smooth: dict, transfer: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    tables = [("Findings", ["", "claim", "holds", "why not (when not yes)", "cells"], _finding_rows(result))]
    for key, f in result.items():
        tables.append((f"{key}: paired differences", ["difference", "mean ± 95%", "interval"],
                       [[name, _fmt(d), f"[{d['low']:.2f}, {d['high']:.2f}]"]
                        for name, d in f["evidence"]["differences"].items()]))
    keys = ("test_acc", "forget_acc", "mia_rmia_auc", "avg_gap", "lipschitz_bound")
    tables.append((f"F2: smoothness vs gap ({smooth['seeds']} seeds)", ["target", "model", *keys],
                   [[label, model, *(_fmt(m[k]) if k in m else "-" for k in keys)]
                    for label, by_model in smooth["targets"].items() for model, m in by_model.items()]))
    tables.append((f"F3: models ({transfer['seeds']} seeds)",
                   ["model", "test acc", "bound (pixels)", "bound after normalisation", "target^layers", "smooth"],
                   [[name, _fmt(m["test_acc"]), _fmt(m["lipschitz_bound"]), _fmt(m["bound_normalised"]),
                     "-" if m["limit"] is None else f"{m['limit']:g}", str(m["smooth"])]
                    for name, m in transfer["models"].items()]))
    for norm, by_pair in transfer["rate"].items():
        tables.append((f"F3: transfer rate (%), {NORMS[norm]} PGD, eps {transfer['eps'][norm]:g}",
                       ["source -> target", "rate"], [[pair, _fmt(v)] for pair, v in by_pair.items()]))
    return tables


INTRO = ("The thesis's findings on random-sample unlearning, smooth models and class unlearning, each judged by "
         "the rule stated with it over the cells or seeds the studies measured (`dvc repro studies/dvc.yaml`). "
         "Mean ± half-width of the 95% Student-t interval. Nothing was tuned towards a finding: a verdict other "
         "than yes is a measurement.")


def _markdown(result: dict, smooth: dict, transfer: dict) -> str:
    rules = "\n".join(f"- **{key}** ({f['holds']}): {f['claim']}. Rule: {f['rule']}." for key, f in result.items())
    body = "\n\n".join(f"## {title}\n\n{markdown_table(header, rows)}"
                       for title, header, rows in _tables(result, smooth, transfer))
    return f"# Findings\n\n{INTRO}\n\n{rules}\n\n{body}\n"


def _html(result: dict, smooth: dict, transfer: dict, run: TrackedRun) -> str:
    import numpy as np

    from unlearn_pipeline.html_report import png_bytes, render

    figures = []
    for norm, by_pair in transfer["rate"].items():
        sources = list(dict.fromkeys(pair.split("->")[0] for pair in by_pair))
        targets = list(dict.fromkeys(pair.split("->")[1] for pair in by_pair))
        grid = np.array([[by_pair[f"{s}->{t}"]["mean"] for t in targets] for s in sources])
        with figure(f"transfer_heatmap_{norm}.png", run) as (fig, ax):
            image = ax.imshow(grid, cmap="viridis")
            ax.set(xticks=range(len(targets)), xticklabels=targets, yticks=range(len(sources)),
                   yticklabels=sources, xlabel="target model", ylabel="source model",
                   title=f"transfer rate (%), {NORMS[norm]} PGD, mean of {transfer['seeds']} seeds")
            for (i, j), value in np.ndenumerate(grid):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="white")
            fig.colorbar(image)
            fig.tight_layout()
            figures.append((f"F3: transfer rate, {NORMS[norm]} PGD", png_bytes(fig)))
    rules = " ".join(f"{key}: {f['rule']}." for key, f in result.items())
    return render("Findings of the studies", f"{INTRO} {rules}", _tables(result, smooth, transfer), figures)
