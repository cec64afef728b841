"""The thesis's findings as rules over measured results (no torch: the rules read numbers).

Each finding is a dict ``{"claim", "holds", "rule", "why", "cells", "margin", "alpha",
"detectable", "control", "evidence"}``. A claim is a set of paired differences it says
are positive (e.g. a baseline's Avg Gap minus AMUN's, per cell), judged by :func:`verdict`
with simultaneous Student-t intervals (Bonferroni: each at level ``1 - alpha / m`` for the
claim's ``m`` differences, so that all ``m`` hold together at ``1 - alpha``):

- ``yes``: every difference's interval lies above 0;
- ``no``: the data contradict the claim: some interval lies wholly below 0, or lies inside
  ``(-margin, +margin)`` without lying above 0 (an equivalence test at the same level: a
  tie refutes "smallest" and "raises");
- ``inconclusive``: otherwise (some interval reaches 0 and is wider than the margin);
- ``untestable``: the finding's positive control failed: its instrument did not tell the
  original model from the retrained one (or the like), so no verdict counts.

``margin`` is the smallest difference that matters for the claim, fixed in params.yaml
(``findings.margins``) before a study runs; ``detectable`` is the largest adjusted
half-width among the claim's differences: the smallest true difference its cells could
have shown as ``yes`` about half of the time.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

CORRECTION = "Bonferroni"


def interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """``mean``, ``ci95`` (half-width of the Student-t interval at ``level``; 0 for one value;
    the name is kept for the 95% default), ``low`` and ``high`` of ``values``, rounded to 4 decimals."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    half = 0.0
    if len(values) > 1:
        half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    mean = float(values.mean())
    return {k: round(v, 4) for k, v in {"mean": mean, "ci95": half, "low": mean - half, "high": mean + half}.items()}


def rule_text(margin: float, alpha: float) -> str:
    return (f"{CORRECTION}-adjusted {100 * (1 - alpha):g}% Student-t intervals over cells; yes when every "
            f"difference's interval lies above 0; no when one lies below 0, or inside +-{margin:g} without "
            f"lying above 0 (a tie); inconclusive otherwise; untestable when the positive control fails")


def _describe(name: str, i: dict, level: float, cells: int) -> str:
    return (f"{name}: {i['mean']:+.2f}, {100 * level:.3g}% interval [{i['low']:+.2f}, {i['high']:+.2f}] over "
            f"{cells} cells")


def verdict(differences: Mapping[str, Sequence[float]], margin: float, alpha: float = 0.05,
            control: dict | None = None) -> dict:
    """``{"holds", "why", "intervals", "level", "detectable"}`` for named paired differences
    that a claim says are positive; ``control``: the finding's positive control
    (``{"passed": bool, ...}``), whose failure makes the verdict ``untestable``."""
    level = 1 - alpha / max(1, len(differences))
    intervals = {name: interval(values, level) for name, values in differences.items()}
    detectable = round(max((i["ci95"] for i in intervals.values()), default=0.0), 4)
    result = {"intervals": intervals, "level": round(level, 6), "detectable": detectable}
    cells = {name: len(values) for name, values in differences.items()}
    below = [n for n, i in intervals.items() if i["high"] < 0]
    tied = [n for n, i in intervals.items() if -margin < i["low"] <= 0 and i["high"] < margin]
    unsure = [n for n, i in intervals.items() if i["low"] <= 0]
    if control is not None and not control["passed"]:
        return {**result, "holds": "untestable", "why": f"positive control failed: {control['why']}"}
    missing = [n for n, i in intervals.items() if np.isnan(i["mean"])]
    if missing:
        return {**result, "holds": "inconclusive", "why": f"{missing[0]}: not measured in every cell"}
    if below:
        name = min(below, key=lambda n: intervals[n]["high"])
        return {**result, "holds": "no",
                "why": _describe(name, intervals[name], level, cells[name]) + ": below 0, against the claim"}
    if tied:
        name = min(tied, key=lambda n: intervals[n]["mean"])
        return {**result, "holds": "no", "why": _describe(name, intervals[name], level, cells[name])
                + f": inside the margin +-{margin:g}, a tie"}
    if unsure:
        name = min(unsure, key=lambda n: intervals[n]["low"])
        return {**result, "holds": "inconclusive", "why": _describe(name, intervals[name], level, cells[name])
                + f": reaches 0 and is wider than the margin +-{margin:g}; the cells can detect about "
                  f"{intervals[name]['ci95']:.2f}"}
    return {**result, "holds": "yes", "why": ""}


def control(name: str, values: Sequence[float], alpha: float = 0.05, *, above: bool = False,
            tied: bool = False) -> dict:
    """A positive control: the per-cell ``values`` (e.g. the original's attack AUC minus
    retrain's) must differ from 0 with a ``1 - alpha`` interval (``above``: lie above it);
    ``tied``: the instrument gave no information at all (e.g. every RMIA score 0), which
    fails the control as such."""
    i = interval(values, 1 - alpha)
    passed = not tied and (i["low"] > 0 or (not above and i["high"] < 0))
    why = (f"{name}: the attack's scores are all tied (AUC exactly 50)" if tied else
           f"{name}: {i['mean']:+.2f}, {100 * (1 - alpha):g}% interval [{i['low']:+.2f}, {i['high']:+.2f}] "
           f"{('lies above' if passed else 'does not lie above') if above else ('excludes' if passed else 'includes')}"
           f" 0")
    return {"rule": name, "passed": passed, "why": why, "interval": i}


def all_controls(*controls: dict) -> dict:
    """One control that passes when every one of ``controls`` passes (the first failure says why)."""
    failed = [c for c in controls if not c["passed"]]
    return {"rule": "; ".join(c["rule"] for c in controls), "passed": not failed,
            "why": failed[0]["why"] if failed else "; ".join(c["why"] for c in controls),
            "parts": list(controls)}


def _finding(claim: str, rule: str, differences: Mapping[str, Sequence[float]], evidence: dict, cells: int,
             margin: float, alpha: float, positive_control: dict | None) -> dict:
    judged = verdict(differences, margin, alpha, positive_control)
    return {"claim": claim, "holds": judged["holds"], "rule": f"{rule} ({rule_text(margin, alpha)})",
            "why": judged["why"], "cells": cells, "margin": margin, "alpha": alpha, "level": judged["level"],
            "detectable": judged["detectable"], "control": positive_control,
            "evidence": {"differences": judged["intervals"], **evidence}}


def amun_smallest_gap(gaps: Mapping[str, Sequence[float]], groups: Mapping[str, Sequence[str]], margin: float,
                      alpha: float = 0.05, positive_control: dict | None = None) -> dict:
    """F1. ``gaps``: each model's Avg Gap (RMIA) per cell (the same cells, in the same
    order); ``groups``: AMUN's name in each access group -> the baselines it is compared with."""
    differences = {f"{base} - {amun}": np.subtract(gaps[base], gaps[amun]).tolist()
                   for amun, bases in groups.items() for base in bases}
    means = {name: interval(values)["mean"] for name, values in gaps.items()}
    return _finding(
        "AMUN has the smallest Avg Gap to retrain, with and without remain access",
        "per cell, each baseline's Avg Gap (RMIA) minus that of the AMUN of its access group (amun with remain "
        "access, amun_no_remain without)", differences,
        {"mean_gap": means, "groups": {k: list(v) for k, v in groups.items()}},
        len(next(iter(gaps.values()))), margin, alpha, positive_control)


def smoother_smaller_gap(gaps: Mapping[str, Mapping[str, Sequence[float]]], bounds: Mapping[str, dict],
                         rough: str, smooth: str, margin: float, alpha: float = 0.05,
                         positive_control: dict | None = None, method: str = "amun_no_remain") -> dict:
    """F2. ``gaps``: target label -> method -> Avg Gap (RMIA) per seed; the claim compares
    the unclipped models (``rough``) with the ``smooth`` target; ``bounds``: target label
    -> the models' Lipschitz bounds and accuracies (evidence)."""
    differences = {f"{method}: {rough} - {smooth}": np.subtract(gaps[rough][method], gaps[smooth][method]).tolist()}
    means = {label: {m: interval(v)["mean"] for m, v in by_method.items()} for label, by_method in gaps.items()}
    others = {f"{m}: {rough} - {smooth}": interval(np.subtract(gaps[rough][m], gaps[smooth][m]))
              for m in gaps[rough] if m != method}
    return _finding(
        "Smoother models make AMUN's gap smaller, above all without remain access",
        f"per seed, {method}'s Avg Gap (RMIA) on the unclipped models ({rough}) minus that at {smooth}, the "
        f"smoothest target whose originals keep test accuracy (findings.max_accuracy_drop); the other methods' "
        f"differences are reported beside it", differences,
        {"compared": [rough, smooth], "mean_gap": means, "other_differences": others, "models": dict(bounds)},
        len(gaps[rough][method]), margin, alpha, positive_control)


def smoother_more_transferable(rates: Mapping[str, Mapping[str, Sequence[float]]], smooth_models: bool,
                               rough: str, smooth: str, margin: float, alpha: float = 0.05,
                               positive_control: dict | None = None, trend: dict | None = None) -> dict:
    """F3. ``rates``: norm (``l2``, ``linf``) -> ``"<source>-><target>"`` -> transfer rate
    per seed; the claim compares ``smooth``->``smooth`` with ``rough``->``rough``; ``trend``:
    the slope of the transfer rate against log(bound) over the accurate targets (evidence)."""
    differences = {f"{norm}: {smooth}->{smooth} - {rough}->{rough}":
                   np.subtract(by_pair[f"{smooth}->{smooth}"], by_pair[f"{rough}->{rough}"]).tolist()
                   for norm, by_pair in rates.items()}
    finding = _finding(
        "Smoothness raises adversarial transferability",
        f"per seed and attack norm, the transfer rate between two independently trained models at {smooth}, the "
        f"smoothest target whose models keep test accuracy (findings.max_accuracy_drop), minus that between two "
        f"unclipped models ({rough}); every clipped model must be smooth (bound within 5% of target^layers)",
        differences,
        {"compared": [rough, smooth], "mean_rate": {norm: {pair: interval(v)["mean"] for pair, v in by_pair.items()}
                                                    for norm, by_pair in rates.items()},
         "all_models_smooth": smooth_models, "trend": trend or {}},
        len(next(iter(next(iter(rates.values())).values()))), margin, alpha, positive_control)
    if not smooth_models and finding["holds"] == "yes":
        finding.update(holds="inconclusive", why="some clipped model's bound exceeds 1.05 x target^layers")
    return finding


def rmia_stronger(rmia_auc: Sequence[float], feature_auc: Sequence[float], separated: Mapping[str, int],
                  margin: float, alpha: float = 0.05, positive_control: dict | None = None) -> dict:
    """F4. Per cell, the original model's forget-vs-test AUC under RMIA and under the SVC
    attack's own feature (the true-label confidence, scored by the loss attack's AUC: the
    loss is -log of the confidence, the same ranking); ``separated``: attack -> methods
    whose score differs from retrain's with a 95% interval excluding 0 (evidence)."""
    return _finding(
        "RMIA is a stronger test than the SVC attack",
        "per cell, the original model's RMIA AUC (forget vs test) minus the AUC of the SVC attack's feature "
        "(true-label confidence, as the loss attack's AUC)",
        {"rmia_auc - confidence_auc": np.subtract(rmia_auc, feature_auc).tolist()},
        {"rmia_auc": interval(rmia_auc), "confidence_auc": interval(feature_auc),
         "methods_told_from_retrain": dict(separated)}, len(rmia_auc), margin, alpha, positive_control)


AMUN_VARIANTS = ("amun", "amun_no_remain", "amun_salun")  # AMUN itself; every other method is a baseline
BASES = ("original", "retrain")
# baselines the field compares with now, beyond the thesis's comparison set: reported beside each
# finding (``evidence.beside_thesis``), never in its verdict (the thesis made no claim about them)
BEYOND_THESIS = {"random": ("neggrad_plus", "scrub", "ssd"), "class": ("neggrad_plus", "ssd", "unsir")}


def beside_thesis(values: Mapping[str, Sequence[float]], reference: Sequence[float], extras: Sequence[str]) -> dict:
    """Per method of ``extras`` present in ``values``: its mean and the 95% interval of its per-cell
    difference from ``reference`` (the finding's subject or floor, the same cells in the same order)."""
    return {name: {"mean": interval(values[name])["mean"],
                   "difference": interval(np.subtract(values[name], reference).tolist())}
            for name in extras if name in values}


def baseline_groups(cells: Mapping[str, Sequence[Mapping]]) -> dict[str, list[str]]:
    """AMUN's name in each access group -> the baselines of that group (``remain_access``
    of their metrics): ``amun`` with remain access, ``amun_no_remain`` without."""
    groups = {amun: [m for m, per_cell in cells.items() if m not in (*AMUN_VARIANTS, *BASES, *BEYOND_THESIS["random"])
                     and per_cell[0].get("remain_access", True) == (amun == "amun")]
              for amun in ("amun", "amun_no_remain") if amun in cells}
    return {amun: bases for amun, bases in groups.items() if bases}


def methods_told_from_retrain(cells: Mapping[str, Sequence[Mapping]]) -> dict[str, int]:
    """Per attack (``rmia``: RMIA AUC, ``svc``: MIA-efficacy), how many methods' scores differ
    from retrain's: the 95% interval of the per-cell difference excludes 0."""
    counts = {}
    for attack, key in (("rmia", "mia_rmia_auc"), ("svc", "mia_svc")):
        diffs = [interval([c[key] - r[key] for c, r in zip(per_cell, cells["retrain"])])
                 for name, per_cell in cells.items() if name not in BASES]
        counts[attack] = sum(d["low"] > 0 or d["high"] < 0 for d in diffs)
    return counts


def rmia_sees_the_original(original: Sequence[Mapping], retrain: Sequence[Mapping], alpha: float = 0.05) -> dict:
    """The random track's positive control: per cell, the original's RMIA AUC (forget vs
    test) minus retrain's differs from 0; a cell whose two AUCs are both exactly 50 had
    every RMIA score tied (the likelihood ratios never crossed gamma)."""
    tied = all(o["mia_rmia_auc"] == 50.0 and r["mia_rmia_auc"] == 50.0 for o, r in zip(original, retrain))
    return control("original's RMIA AUC - retrain's", [o["mia_rmia_auc"] - r["mia_rmia_auc"]
                                                       for o, r in zip(original, retrain)], alpha, tied=tied)


def seed_study_findings(cells: Mapping[str, Sequence[Mapping]], margins: Mapping[str, float],
                        alpha: float = 0.05) -> dict[str, dict]:
    """F1 and F4 from the seed study's cells: model (``original``, ``retrain``, each method)
    -> its metrics per cell, the same cells in the same order, each with ``avg_gap``."""
    sees = rmia_sees_the_original(cells["original"], cells["retrain"], alpha)
    thesis = {name: per_cell for name, per_cell in cells.items() if name not in BEYOND_THESIS["random"]}
    return {"F1": f1_of_cells(cells, margins["F1"], alpha),
            "F4": rmia_stronger([c["mia_rmia_auc"] for c in cells["original"]],
                                [c["mia_loss_auc"] for c in cells["original"]], methods_told_from_retrain(thesis),
                                margins["F4"], alpha, sees)}


def f1_of_cells(cells: Mapping[str, Sequence[Mapping]], margin: float, alpha: float = 0.05) -> dict:
    """F1 (:func:`amun_smallest_gap`) from cells as :func:`seed_study_findings` takes them, with
    RMIA's positive control and the baselines beyond the thesis reported beside it."""
    gaps = {name: [c["avg_gap"] for c in per_cell] for name, per_cell in cells.items()}
    sees = rmia_sees_the_original(cells["original"], cells["retrain"], alpha)
    f1 = amun_smallest_gap(gaps, baseline_groups(cells), margin, alpha, sees)
    if "amun" in gaps:
        f1["evidence"]["beside_thesis"] = beside_thesis(gaps, gaps["amun"], BEYOND_THESIS["random"])
    return f1


def f1_memorised(cells_by_level: Mapping[str, Mapping[str, Sequence[Mapping]]], margin: float, alpha: float = 0.05,
                 forget_scores: Mapping[str, float] | None = None) -> dict:
    """F1-memorised: F1's rule and control (:func:`f1_of_cells`) at each memorisation level of
    ``cells_by_level`` (level -> cells). A question the thesis does not ask: does AMUN's advantage
    hold when the forget set is hard? The finding is the verdict at the hardest level present
    (``high`` before ``medium`` before ``low``, Zhao et al.'s difficulties); every level's
    verdict is in ``evidence.by_difficulty``, with ``forget_scores`` (the forget sets' mean
    memorisation score per level) beside them."""
    from unlearn.config import MEMORIZATION_LEVELS

    judged = {level: f1_of_cells(cells, margin, alpha) for level, cells in cells_by_level.items()}
    hardest = max(judged, key=MEMORIZATION_LEVELS.index)
    finding = judged[hardest]
    finding["claim"] = (f"AMUN has the smallest Avg Gap to retrain on forget sets drawn from the {hardest}-"
                        f"memorisation pool, with and without remain access (not a claim of the thesis, whose "
                        f"forget sets are random: the question of Zhao et al., 2024)")
    finding["rule"] = f"at the hardest level studied ({hardest}), F1's rule: {finding['rule']}"
    finding["thesis"] = False
    finding["difficulty"] = hardest
    finding["evidence"]["by_difficulty"] = {
        level: {"holds": f["holds"], "why": f["why"], "cells": f["cells"], "detectable": f["detectable"],
                "control_passed": f["control"]["passed"], "control": f["control"]["why"],
                "mean_gap": f["evidence"]["mean_gap"],
                "forget_score_mean": None if forget_scores is None else forget_scores.get(level)}
        for level, f in sorted(judged.items(), key=lambda item: MEMORIZATION_LEVELS.index(item[0]))}
    return finding


def mia_nn_exposes(gaps: Mapping[str, Sequence[float]], floor: Sequence[float], margin: float,
                   alpha: float = 0.05, positive_control: dict | None = None) -> dict:
    """F5. ``gaps``: each prior class-unlearning method's MIA-NN gap to retrain per cell;
    ``floor``: retrain's seed-to-seed MIA-NN noise floor in the same cells."""
    differences = {f"{name} - retrain floor": np.subtract(values, floor).tolist() for name, values in gaps.items()}
    return _finding(
        "MIA-NN exposes prior class-unlearning methods: their MIA-NN gap is above retrain's seed-to-seed noise",
        "per cell, each prior method's MIA-NN gap to the retrained models minus the mean distance of one "
        "retrained seed's MIA-NN AUC from the others'", differences,
        {"mean_gap": {name: interval(values)["mean"] for name, values in gaps.items()},
         "floor": interval(floor)}, len(floor), margin, alpha, positive_control)


def trw_smallest_gaps(gaps_by_attack: Mapping[str, Mapping[str, Sequence[float]]], margin: float,
                      alpha: float = 0.05, positive_control: dict | None = None, method: str = "trw",
                      skipped: Sequence[str] = ()) -> dict:
    """F6. Per attack (``MIA-NN``, ``U-LiRA``), per-cell gaps of every class-track method,
    ``method`` (TRW) among them; ``skipped``: attacks left out (off, or their control failed)."""
    differences = {f"{attack}: {name} - {method}": np.subtract(gaps[name], gaps[method]).tolist()
                   for attack, gaps in gaps_by_attack.items() for name in gaps if name != method}
    claim = "TRW has the smallest MIA-NN gap and the smallest U-LiRA gap to retrain"
    cells = len(next(iter(next(iter(gaps_by_attack.values())).values()))) if gaps_by_attack else 0
    return _finding(
        f"{claim} (judged without {', '.join(skipped)})" if skipped else claim,
        f"per cell, each other method's gap minus {method}'s, for every attack whose positive control passed",
        differences or {"no attack": [0.0]},
        {"mean_gap": {attack: {name: interval(values)["mean"] for name, values in gaps.items()}
                      for attack, gaps in gaps_by_attack.items()}, "subject": method, "attacks_left_out": list(skipped)},
        cells, margin, alpha, positive_control)


def class_track_controls(cells: Mapping[str, Sequence[Mapping]], alpha: float = 0.05) -> dict[str, dict]:
    """Per attack, whether it exposes the original model: MIA-NN, the original's MIA-NN gap
    to the retrained models minus retrain's seed-to-seed floor; U-LiRA (when measured), the
    original's U-LiRA AUC minus retrain's."""
    original, retrain = cells["original"], cells["retrain"]
    controls = {"MIA-NN": control("original's MIA-NN gap - retrain floor",
                                  [o["mia_nn_gap"] - r["mia_nn_floor"] for o, r in zip(original, retrain)], alpha,
                                  above=True)}
    if all("ulira_auc" in c for c in (*original, *retrain)):
        controls["U-LiRA"] = control("original's U-LiRA AUC - retrain's",
                                     [o["ulira_auc"] - r["ulira_auc"] for o, r in zip(original, retrain)], alpha)
    return controls


def class_study_findings(cells: Mapping[str, Sequence[Mapping]], margins: Mapping[str, float],
                         alpha: float = 0.05, method: str = "trw", variants: Sequence[str] = ()) -> dict[str, dict]:
    """F5 and F6 from the class study's cells: model (``retrain`` with ``mia_nn_floor``,
    ``original`` with ``mia_nn_gap``, each method) -> its metrics per cell (the same cells in
    the same order), each method with ``mia_nn_gap`` and ``ulira_gap``. ``method`` is F6's
    subject; ``variants`` (e.g. other TRW configurations) are reported beside it and are not
    prior methods."""
    methods = [name for name in cells if name not in BASES]
    prior = [name for name in methods if name != method and name not in (*variants, *BEYOND_THESIS["class"])]
    floor = [c["mia_nn_floor"] for c in cells["retrain"]]
    controls = class_track_controls(cells, alpha)
    keys = {"MIA-NN": "mia_nn_gap", "U-LiRA": "ulira_gap"}
    measured = {attack: key for attack, key in keys.items()
                if attack in controls and all(key in c for name in methods for c in cells[name])}
    judged = {attack: {name: [c[key] for c in cells[name]] for name in [method, *prior]}
              for attack, key in measured.items() if controls[attack]["passed"]}
    skipped = [f"{attack} ({'off' if attack not in measured else 'control failed'})" for attack in keys
               if attack not in judged]
    any_exposes = {"rule": "the original is exposed by MIA-NN or U-LiRA", "passed": bool(judged),
                   "why": "; ".join(c["why"] for c in controls.values()), "parts": list(controls.values())}
    variant_gaps = {attack: {name: interval([c[key] for c in cells[name]])["mean"] for name in variants}
                    for attack, key in measured.items()}
    f6 = trw_smallest_gaps(judged, margins["F6"], alpha, any_exposes, method, skipped)
    f6["evidence"]["variants_mean_gap"] = variant_gaps
    extras = [name for name in BEYOND_THESIS["class"] if name in cells]
    f6["evidence"]["beside_thesis"] = {
        attack: beside_thesis({name: [c[key] for c in cells[name]] for name in extras},
                              [c[key] for c in cells[method]], extras)
        for attack, key in measured.items() if method in cells}
    f5 = mia_nn_exposes({name: [c["mia_nn_gap"] for c in cells[name]] for name in prior}, floor,
                        margins["F5"], alpha, controls["MIA-NN"])
    f5["evidence"]["beside_thesis"] = beside_thesis({name: [c["mia_nn_gap"] for c in cells[name]] for name in extras},
                                                    floor, extras)
    return {"F5": f5, "F6": f6}


def against_margin(difference: float, half_width: float, margin: float, samples: int) -> dict:
    """Whether a measured ``difference`` (e.g. an unlearned model's attack AUC minus the
    retrained model's) lies within ``+-margin``, given the half-width of its 95% interval
    from ``samples`` samples: ``inside`` when the whole interval does, ``outside`` when it
    lies wholly beyond the margin, else ``undecided``, with ``samples_needed``: about how many
    samples would decide it, the half-width shrinking as 1 / sqrt(samples) and the difference
    held where it is (None when it sits on the margin)."""
    low, high = difference - half_width, difference + half_width
    answer = ("inside" if -margin <= low and high <= margin else
              "outside" if low > margin or high < -margin else "undecided")
    distance = abs(abs(difference) - margin)
    needed = None
    if answer == "undecided" and distance > 0:
        needed = int(np.ceil(samples * (half_width / distance) ** 2))
    return {"answer": answer, "difference": round(difference, 4), "ci95": round(half_width, 4),
            "samples": samples, "samples_needed": needed}
