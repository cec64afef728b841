"""Stage ``findings`` (studies/dvc.yaml): the thesis's findings F1-F6 and F1-memorised,
judged by the rules of :mod:`unlearn.findings` from what the studies measured.

- F1 (AMUN has the smallest Avg Gap) and F4 (RMIA is a stronger test than the SVC
  attack): the seed study's cells (``sweep_cell``, ``sweep_method``);
- F2 (smoother models, smaller gap for AMUN): ``smoothness@<seed>``;
- F3 (smoothness raises transferability): ``transfer@<seed>``;
- F5 (MIA-NN exposes prior class-unlearning methods) and F6 (TRW has the smallest MIA-NN
  and U-LiRA gaps): the class study's cells (``class_cell``, ``class_method``);
- F1-memorised (F1 on forget sets of memorised samples, judged at the hardest level; not a
  claim of the thesis): the memorised-forget study (``memorized_level@<level>``).

Writes ``metrics/findings.json``, ``reports/findings.md``, ``reports/study.html`` (the
findings, the smoothness and transfer tables and the heat maps), ``metrics/transfer.json``
and ``metrics/smoothness.json`` (means and 95% intervals over seeds) and the heat-map CSVs
``plots/transfer_<norm>.csv``."""

from __future__ import annotations

from pathlib import Path

from unlearn.config import Params
from unlearn.io import write_json, write_text
from unlearn_pipeline.cells import target_label
from unlearn_pipeline.common import METRICS_DIR, PLOTS_DIR, REPORTS_DIR, csv_text, figure, markdown_table
from unlearn_pipeline.seed_study import SWEEP, memorized_results, method_path, read_study_file
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

NORMS = {"l2": "L2", "linf": "L-infinity"}


@stage("findings", ("sweep.seeds", "sweep.forget_seeds", "sweep.methods", "smoothness.targets", "smoothness.seeds",
                    "smoothness.methods", "transfer.targets", "transfer.seeds", "class_sweep.seeds",
                    "class_sweep.classes", "class_sweep.methods", "memorized_study.levels", "memorized_study.seeds",
                    "memorized_study.methods", "findings"))
def findings(params: Params, run: TrackedRun) -> None:
    from unlearn.findings import (class_study_findings, f1_memorised, seed_study_findings, smoother_more_transferable,
                                  smoother_smaller_gap)
    from unlearn_pipeline.class_study import class_cells, class_variants

    rules = params.findings
    seed_study = seed_study_findings(_sweep_cells(params), rules.margins, rules.alpha)
    class_study = class_study_findings(class_cells(params), rules.margins, rules.alpha,
                                       variants=class_variants(params))
    smooth = _smoothness(params)
    transfer = _transfer(params)
    memorised, forget_scores = memorized_results(params)
    result = {
        "F1": seed_study["F1"],
        "F2": smoother_smaller_gap(smooth["gaps"], smooth["models"], smooth["rough"], smooth["smooth"],
                                   rules.margins["F2"], rules.alpha, smooth["control"]),
        "F3": smoother_more_transferable(transfer["pairs"], transfer["all_smooth"], transfer["rough"],
                                         transfer["smooth"], rules.margins["F3"], rules.alpha, transfer["control"],
                                         transfer["trend"]),
        "F4": seed_study["F4"],
        **class_study,
        "F1-memorised": f1_memorised(memorised, rules.margins["F1"], rules.alpha, forget_scores),
    }
    write_json(METRICS_DIR / "findings.json", result)
    write_json(METRICS_DIR / "smoothness.json", smooth["summary"])
    write_json(METRICS_DIR / "transfer.json", transfer["summary"])
    write_text(REPORTS_DIR / "findings.md", _markdown(result, smooth["summary"], transfer["summary"]))
    write_text(REPORTS_DIR / "study.html", _html(result, smooth["summary"], transfer["summary"], run))
    run.log_metrics({f"holds.{key}": HOLDS_SCORE[f["holds"]] for key, f in result.items()})
    run.log_metrics({f"detectable.{key}": f["detectable"] for key, f in result.items()})
    for path in (METRICS_DIR / "findings.json", REPORTS_DIR / "findings.md", REPORTS_DIR / "study.html"):
        run.log_artifact(path, "report")


HOLDS_SCORE = {"yes": 1.0, "inconclusive": 0.5, "no": 0.0, "untestable": -1.0}  # MLflow metrics are numbers


def accurate_target(accuracy: dict[str, float], ordered: list[str], max_drop: float) -> tuple[str, dict]:
    """The label F2 / F3 compare with the unclipped models (``ordered[0]``; the rest from the
    loosest target to the smoothest): the smoothest whose mean test ``accuracy`` is at most
    ``max_drop`` points below the unclipped one's, with the control that one exists (when
    none does, the smoothest label and a failed control)."""
    kept = [label for label in ordered[1:] if accuracy[label] >= accuracy[ordered[0]] - max_drop]
    chosen = kept[-1] if kept else ordered[-1]
    why = (f"test accuracy {accuracy[chosen]:.2f} at {chosen} against {accuracy[ordered[0]]:.2f} unclipped "
           f"({'within' if kept else 'more than'} {max_drop:g} points)")
    return chosen, {"rule": f"a clipped target keeps test accuracy within {max_drop:g} points", "passed": bool(kept),
                    "why": why if kept else f"no clipped target keeps accuracy: {why}"}


def _sweep_cells(params: Params) -> dict[str, list[dict]]:
    """Every model's metrics per cell of the seed study (original and retrain with their gaps)."""
    from unlearn.protocol import gaps

    names = [f"seed{s}-forget{f}" for s in params.sweep.seeds for f in params.sweep.forget_seeds]
    bases = [read_study_file(SWEEP / "cells" / name / "cell.json")["metrics"] for name in names]
    methods = {m: read_study_file(method_path(m))["cells"] for m in params.sweep.methods}
    return {"original": [{**b["original"], **gaps(b["original"], b["retrain"])} for b in bases],
            "retrain": [{**b["retrain"], "avg_gap": 0.0, "avg_gap_svc": 0.0} for b in bases],
            **{m: [by_cell[name] for name in names] for m, by_cell in methods.items()}}


def _smoothness(params: Params) -> dict:
    """Per target label: each model's Avg Gap per seed, and the summary over seeds; the two
    targets F2 compares (unclipped and the smoothest accurate one) and its positive control."""
    from unlearn.findings import all_controls, interval, rmia_sees_the_original

    per_seed = [read_study_file(Path("data/smoothness") / f"seed{s}" / "results.json")
                for s in params.smoothness.seeds]
    # unclipped first, then from the loosest target to the smoothest (F2 compares two of them)
    targets = sorted(params.smoothness.targets, key=lambda t: float("-inf") if t is None else -t)
    labels = [target_label(t) for t in targets]
    models = ("original", "retrain", *params.smoothness.methods)
    gaps = {label: {m: [r[label][m]["avg_gap"] for r in per_seed] for m in params.smoothness.methods}
            for label in labels}
    summary = {label: {m: {key: interval([r[label][m][key] for r in per_seed])
                           for key in ("test_acc", "forget_acc", "mia_rmia_auc", "avg_gap", "lipschitz_bound")
                           if key in per_seed[0][label][m]} for m in models} for label in labels}
    bounds = {label: {m: summary[label][m]["lipschitz_bound"]["mean"] for m in models
                      if "lipschitz_bound" in summary[label][m]} for label in labels}
    accuracy = {label: summary[label]["original"]["test_acc"]["mean"] for label in labels}
    smooth, accurate = accurate_target(accuracy, labels, params.findings.max_accuracy_drop)
    control = all_controls(*(rmia_sees_the_original([r[label]["original"] for r in per_seed],
                                                    [r[label]["retrain"] for r in per_seed], params.findings.alpha)
                             for label in (labels[0], smooth)), accurate)
    return {"gaps": gaps, "models": bounds, "rough": labels[0], "smooth": smooth, "control": control,
            "summary": {"seeds": len(per_seed), "compared": [labels[0], smooth], "targets": summary}}


def _transfer(params: Params) -> dict:
    """Transfer rates per norm and (source, target) pair over seeds, every model's bound, the
    targets F3 compares, its positive control (unclipped models transfer above the
    random-direction chance level) and the trend of the rate against log(bound)."""
    import numpy as np

    from unlearn.findings import all_controls, control, interval

    per_seed = [read_study_file(Path("data/transfer") / f"seed{s}.json") for s in params.transfer.seeds]
    pairs = {norm: {f"{s}->{t}": [_rate(r[norm]["rate"][s][t]) for r in per_seed]
                    for s in per_seed[0][norm]["rate"] for t in per_seed[0][norm]["rate"][s]} for norm in NORMS}
    models = {name: {key: interval([r["models"][name][key] for r in per_seed])
                     for key in ("test_acc", "lipschitz_bound", "bound_normalised")} | {
                  "limit": per_seed[0]["models"][name]["limit"],
                  "smooth": all(r["models"][name]["smooth"] for r in per_seed)} for name in per_seed[0]["models"]}
    targets = sorted(params.transfer.targets, key=lambda t: float("-inf") if t is None else -t)
    labels = [target_label(t) for t in targets]
    accuracy = {label: float(np.mean([models[f"{role}.{label}"]["test_acc"]["mean"] for role in ("source", "target")]))
                for label in labels}
    max_drop, alpha = params.findings.max_accuracy_drop, params.findings.alpha
    rough = labels[0]
    smooth, kept = accurate_target(accuracy, labels, max_drop)
    chance = {norm: control(f"{NORMS[norm]}: {rough}->{rough} rate - random-direction rate",
                            [_rate(r[norm]["rate"][rough][rough]) - _rate(r[norm]["rate_random"][rough][rough])
                             for r in per_seed], alpha, above=True) for norm in NORMS}
    accurate = [label for label in labels if accuracy[label] >= accuracy[rough] - max_drop]
    trend = {norm: interval([_slope([np.log(np.mean([r["models"][f"{role}.{label}"]["bound_normalised"]
                                                      for role in ("source", "target")])) for label in accurate],
                                    [_rate(r[norm]["rate"][label][label]) for label in accurate]) for r in per_seed])
             for norm in NORMS} if len(accurate) > 1 else {}
    summary = {"seeds": len(per_seed), "eps": per_seed[0]["eps"], "samples": per_seed[0]["samples"],
               "models": models, "compared": [rough, smooth], "accurate_targets": accurate,
               "trend_per_log_bound": trend,
               "rate": {norm: {pair: interval(v) for pair, v in by_pair.items()} for norm, by_pair in pairs.items()},
               "rate_random": {norm: {f"{s}->{t}": interval([_rate(r[norm]["rate_random"][s][t]) for r in per_seed])
                                      for s in per_seed[0][norm]["rate_random"]
                                      for t in per_seed[0][norm]["rate_random"][s]} for norm in NORMS}}
    for norm, by_pair in summary["rate"].items():
        write_text(PLOTS_DIR / f"transfer_{norm}.csv", csv_text(
            ["source", "target", "rate"], [[*pair.split("->"), f"{v['mean']:.2f}"] for pair, v in by_pair.items()]))
    return {"pairs": pairs, "all_smooth": all(m["smooth"] for m in models.values()), "summary": summary,
            "rough": rough, "smooth": smooth, "trend": trend,
            "control": all_controls(*chance.values(), kept)}


def _rate(value: float | None) -> float:
    return float("nan") if value is None else value


def _slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of ``y`` on ``x``."""
    import numpy as np

    return float(np.polyfit(x, y, 1)[0])


def _fmt(stats: dict) -> str:
    return f"{stats['mean']:.2f} ± {stats['ci95']:.2f}"


def _finding_rows(result: dict) -> list[list[str]]:
    return [[key, f["claim"], f["holds"], f["why"] or "-", str(f["cells"]), f"{f['margin']:g}",
             f"{f['detectable']:.2f}", ("passed: " if f["control"]["passed"] else "FAILED: ") + f["control"]["why"]]
            for key, f in result.items()]


def _tables(result: dict, smooth: dict, transfer: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    tables = [("Findings", ["", "claim", "holds", "why (when not yes)", "cells", "margin", "detectable",
                            "positive control"], _finding_rows(result))]
    for key, f in result.items():
        level = f"{100 * f['level']:.3g}%"
        tables.append((f"{key}: paired differences ({level} intervals: {f['alpha']:g} shared over "
                       f"{len(f['evidence']['differences'])} by Bonferroni)", ["difference", f"mean ± {level}",
                                                                              "interval"],
                       [[name, _fmt(d), f"[{d['low']:.2f}, {d['high']:.2f}]"]
                        for name, d in f["evidence"]["differences"].items()]))
        tables.extend(_beside_tables(key, f["evidence"].get("beside_thesis")))
        tables.extend(_difficulty_tables(key, f["evidence"].get("by_difficulty")))
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
                       ["source -> target", "rate", "chance (random direction, same norm)"],
                       [[pair, _fmt(v), _fmt(transfer["rate_random"][norm][pair])] for pair, v in by_pair.items()]))
    if transfer["trend_per_log_bound"]:
        tables.append((f"F3: trend over the accurate targets {', '.join(transfer['accurate_targets'])}",
                       ["norm", "slope of rate (points) per log(bound), mean ± 95%"],
                       [[NORMS[norm], _fmt(v)] for norm, v in transfer["trend_per_log_bound"].items()]))
    return tables


def _beside_tables(key: str, beside: dict | None) -> list[tuple[str, list[str], list[list[str]]]]:
    """The baselines beyond the thesis's set, per finding (and attack, for F6): mean and the
    per-cell difference from the finding's subject, 95% (not Bonferroni: nothing is judged)."""
    if not beside:
        return []
    by_attack = beside if all(isinstance(v, dict) and "mean" not in v for v in beside.values()) else {"": beside}
    subject = {"F1": "AMUN", "F1-memorised": "AMUN", "F5": "retrain's floor", "F6": "TRW"}.get(key, "the subject")
    return [(f"{key}{f' ({attack})' if attack else ''}: beyond the thesis, reported beside it, not judged",
             ["method", "mean", f"minus {subject}, mean ± 95%", "interval"],
             [[name, f"{m['mean']:.2f}", _fmt(m["difference"]),
               f"[{m['difference']['low']:.2f}, {m['difference']['high']:.2f}]"] for name, m in rows.items()])
            for attack, rows in by_attack.items() if rows]


def _difficulty_tables(key: str, by_difficulty: dict | None) -> list[tuple[str, list[str], list[list[str]]]]:
    """F1-memorised at each level: its verdict, and every model's mean Avg Gap."""
    if not by_difficulty:
        return []
    levels = list(by_difficulty)
    verdicts = [[level, "-" if d["forget_score_mean"] is None else f"{d['forget_score_mean']:.3f}", d["holds"],
                 d["why"] or "-", str(d["cells"]), f"{d['detectable']:.2f}",
                 ("passed: " if d["control_passed"] else "FAILED: ") + d["control"]]
                for level, d in by_difficulty.items()]
    models = list(next(iter(by_difficulty.values()))["mean_gap"])
    gaps = [[model, *(f"{by_difficulty[level]['mean_gap'][model]:.2f}" for level in levels)] for model in models]
    return [(f"{key}: F1's rule at each memorisation level", ["level", "forget set's mean score", "holds",
                                                             "why (when not yes)", "cells", "detectable",
                                                             "positive control"], verdicts),
            (f"{key}: mean Avg Gap to retrain per level", ["model", *levels], gaps)]


INTRO = ("The thesis's findings on random-sample unlearning, smooth models and class unlearning, each judged by "
         "the rule stated with it over the cells or seeds the studies measured (`dvc repro studies/dvc.yaml`). "
         "yes: every paired difference's interval lies above 0; no: one lies below 0, or inside the finding's "
         "margin (a tie); inconclusive: otherwise; untestable: the positive control failed (the attack did not "
         "tell the original from the retrained model, or the like). Intervals are Student-t over cells, "
         "Bonferroni-adjusted within each finding; 'detectable' is the largest adjusted half-width, about the "
         "smallest true difference the cells could show. Margins and controls are fixed in params.yaml "
         "(findings) before the studies run. Nothing was tuned towards a finding: every verdict is a measurement. "
         "Each verdict judges the thesis's comparison set; the baselines the field compares with now (NegGrad+, "
         "SCRUB on the random track, SSD, UNSIR) are reported beside F1, F5 and F6, never in their verdicts. "
         "F1-memorised is not a claim of the thesis: F1's rule on forget sets drawn from the least, middling and "
         "most memorised samples (Zhao et al., 2024), judged at the hardest level.")


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
