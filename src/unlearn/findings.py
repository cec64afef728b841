"""The thesis's findings as rules over measured results (no torch: the rules read numbers).

Each finding is a dict ``{"claim", "holds", "rule", "evidence", "cells", "why"}``:
``holds`` is ``yes``, ``no`` or ``inconclusive`` by the rule written beside it, and
``why`` says in one line what decided a verdict other than ``yes``. Every rule is a set
of paired differences that the claim says are positive (e.g. a baseline's gap minus
AMUN's, per cell), judged by :func:`verdict`: ``yes`` when the 95% Student-t interval of
every difference lies above 0, ``no`` when some difference's mean is 0 or below, and
``inconclusive`` otherwise (every mean above 0, but some interval reaches 0).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

VERDICT_RULE = ("yes when the 95% interval of every difference lies above 0; no when some mean difference is "
                "<= 0; inconclusive otherwise")


def interval(values: Sequence[float]) -> dict[str, float]:
    """``mean``, ``ci95`` (half-width of the 95% Student-t interval; 0 for one value),
    ``low`` and ``high`` of ``values``, rounded to 4 decimals."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    half = 0.0
    if len(values) > 1:
        half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    mean = float(values.mean())
    return {k: round(v, 4) for k, v in {"mean": mean, "ci95": half, "low": mean - half, "high": mean + half}.items()}


def verdict(differences: Mapping[str, Sequence[float]]) -> tuple[str, str, dict[str, dict]]:
    """(holds, why, intervals) for named paired differences the claim says are positive."""
    intervals = {name: interval(values) for name, values in differences.items()}
    against = [name for name, i in intervals.items() if i["mean"] <= 0]
    if against:
        name = min(against, key=lambda n: intervals[n]["mean"])
        return "no", f"{name}: mean {intervals[name]['mean']:+.2f} (the claim needs > 0)", intervals
    unsure = [name for name, i in intervals.items() if i["low"] <= 0]
    if unsure:
        name = min(unsure, key=lambda n: intervals[n]["low"])
        i = intervals[name]
        return ("inconclusive", f"{name}: mean {i['mean']:+.2f}, 95% interval [{i['low']:+.2f}, {i['high']:+.2f}] "
                f"reaches 0 over {len(differences[name])} cells", intervals)
    return "yes", "", intervals


def _finding(claim: str, rule: str, differences: Mapping[str, Sequence[float]], evidence: dict, cells: int) -> dict:
    holds, why, intervals = verdict(differences)
    return {"claim": claim, "holds": holds, "rule": f"{rule} ({VERDICT_RULE})", "why": why, "cells": cells,
            "evidence": {"differences": intervals, **evidence}}


def amun_smallest_gap(gaps: Mapping[str, Sequence[float]], groups: Mapping[str, Sequence[str]]) -> dict:
    """F1. ``gaps``: each model's Avg Gap (RMIA) per cell (the same cells, in the same
    order); ``groups``: AMUN's name in each access group -> the baselines it is compared with."""
    differences = {f"{base} - {amun}": np.subtract(gaps[base], gaps[amun]).tolist()
                   for amun, bases in groups.items() for base in bases}
    means = {name: interval(values)["mean"] for name, values in gaps.items()}
    return _finding(
        "AMUN has the smallest Avg Gap to retrain, with and without remain access",
        "per cell, each baseline's Avg Gap (RMIA) minus that of the AMUN of its access group (amun with remain "
        "access, amun_no_remain without)", differences, {"mean_gap": means, "groups": {k: list(v) for k, v in
                                                                                        groups.items()}},
        len(next(iter(gaps.values()))))


def smoother_smaller_gap(gaps: Mapping[str, Mapping[str, Sequence[float]]], bounds: Mapping[str, dict],
                         method: str = "amun_no_remain") -> dict:
    """F2. ``gaps``: target label (``none`` first, the smoothest last) -> method -> Avg
    Gap (RMIA) per seed; ``bounds``: target label -> the models' Lipschitz bounds and accuracies."""
    labels = list(gaps)
    rough, smooth = labels[0], labels[-1]
    differences = {f"{method}: {rough} - {smooth}": np.subtract(gaps[rough][method], gaps[smooth][method]).tolist()}
    means = {label: {m: interval(v)["mean"] for m, v in by_method.items()} for label, by_method in gaps.items()}
    others = {f"{m}: {rough} - {smooth}": interval(np.subtract(gaps[rough][m], gaps[smooth][m]))
              for m in gaps[rough] if m != method}
    return _finding(
        "Smoother models make AMUN's gap smaller, above all without remain access",
        f"per seed, {method}'s Avg Gap (RMIA) on the unclipped models ({rough}) minus that on the smoothest "
        f"({smooth}); the other methods' differences are reported beside it", differences,
        {"mean_gap": means, "other_differences": others, "models": dict(bounds)}, len(gaps[rough][method]))


def smoother_more_transferable(rates: Mapping[str, Mapping[str, Sequence[float]]], smooth_models: bool,
                               rough: str, smooth: str) -> dict:
    """F3. ``rates``: norm (``l2``, ``linf``) -> ``"<source>-><target>"`` -> transfer rate
    per seed; the claim compares ``smooth``->``smooth`` with ``rough``->``rough``."""
    differences = {f"{norm}: {smooth}->{smooth} - {rough}->{rough}":
                   np.subtract(by_pair[f"{smooth}->{smooth}"], by_pair[f"{rough}->{rough}"]).tolist()
                   for norm, by_pair in rates.items()}
    finding = _finding(
        "Smoothness raises adversarial transferability",
        f"per seed and attack norm, the transfer rate between two independently trained models at the smallest "
        f"Lipschitz target ({smooth}) minus that between two unclipped models ({rough}); every clipped model must "
        f"be smooth (bound within 5% of target^layers)", differences,
        {"mean_rate": {norm: {pair: interval(v)["mean"] for pair, v in by_pair.items()}
                       for norm, by_pair in rates.items()}, "all_models_smooth": smooth_models},
        len(next(iter(next(iter(rates.values())).values()))))
    if not smooth_models and finding["holds"] == "yes":
        finding.update(holds="inconclusive", why="some clipped model's bound exceeds 1.05 x target^layers")
    return finding


def rmia_stronger(rmia_auc: Sequence[float], feature_auc: Sequence[float], separated: Mapping[str, int]) -> dict:
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
         "methods_told_from_retrain": dict(separated)}, len(rmia_auc))


AMUN_VARIANTS = ("amun", "amun_no_remain", "amun_salun")  # AMUN itself; every other method is a baseline
BASES = ("original", "retrain")


def baseline_groups(cells: Mapping[str, Sequence[Mapping]]) -> dict[str, list[str]]:
    """AMUN's name in each access group -> the baselines of that group (``remain_access``
    of their metrics): ``amun`` with remain access, ``amun_no_remain`` without."""
    groups = {amun: [m for m, per_cell in cells.items() if m not in (*AMUN_VARIANTS, *BASES)
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


def seed_study_findings(cells: Mapping[str, Sequence[Mapping]]) -> dict[str, dict]:
    """F1 and F4 from the seed study's cells: model (``original``, ``retrain``, each method)
    -> its metrics per cell, the same cells in the same order, each with ``avg_gap``."""
    gaps = {name: [c["avg_gap"] for c in per_cell] for name, per_cell in cells.items()}
    return {"F1": amun_smallest_gap(gaps, baseline_groups(cells)),
            "F4": rmia_stronger([c["mia_rmia_auc"] for c in cells["original"]],
                                [c["mia_loss_auc"] for c in cells["original"]], methods_told_from_retrain(cells))}


def mia_nn_exposes(gaps: Mapping[str, Sequence[float]], floor: Sequence[float]) -> dict:
    """F5. ``gaps``: each prior class-unlearning method's MIA-NN gap to retrain per cell;
    ``floor``: retrain's seed-to-seed MIA-NN noise floor in the same cells."""
    differences = {f"{name} - retrain floor": np.subtract(values, floor).tolist() for name, values in gaps.items()}
    return _finding(
        "MIA-NN exposes prior class-unlearning methods: their MIA-NN gap is above retrain's seed-to-seed noise",
        "per cell, each prior method's MIA-NN gap to the retrained models minus the mean distance of one "
        "retrained seed's MIA-NN AUC from the others'", differences,
        {"mean_gap": {name: interval(values)["mean"] for name, values in gaps.items()},
         "floor": interval(floor)}, len(floor))


def trw_smallest_gaps(mia_nn_gaps: Mapping[str, Sequence[float]], ulira_gaps: Mapping[str, Sequence[float]],
                      method: str = "trw") -> dict:
    """F6. Per-cell MIA-NN and U-LiRA gaps of every class-track method, ``method`` (TRW) among
    them; ``ulira_gaps`` is empty when U-LiRA was off (``ulira.shadows: 0``): MIA-NN alone."""
    differences = {f"{attack}: {name} - {method}": np.subtract(gaps[name], gaps[method]).tolist()
                   for attack, gaps in (("MIA-NN", mia_nn_gaps), ("U-LiRA", ulira_gaps)) for name in gaps
                   if name != method}
    claim = "TRW has the smallest MIA-NN gap and the smallest U-LiRA gap to retrain"
    return _finding(
        claim if ulira_gaps else f"{claim} (U-LiRA off: MIA-NN only)",
        "per cell, each other method's MIA-NN gap (and U-LiRA gap) minus TRW's", differences,
        {"mean_gap": {attack: {name: interval(values)["mean"] for name, values in gaps.items()}
                      for attack, gaps in (("MIA-NN", mia_nn_gaps), ("U-LiRA", ulira_gaps))}},
        len(mia_nn_gaps[method]))


def class_study_findings(cells: Mapping[str, Sequence[Mapping]], method: str = "trw") -> dict[str, dict]:
    """F5 and F6 from the class study's cells: model (``retrain`` with ``mia_nn_floor``, each
    method) -> its metrics per cell (the same cells in the same order), each method with
    ``mia_nn_gap`` and ``ulira_gap``."""
    methods = [name for name in cells if name not in BASES]
    prior = [name for name in methods if name != method]
    floor = [c["mia_nn_floor"] for c in cells["retrain"]]
    mia_nn = {name: [c["mia_nn_gap"] for c in cells[name]] for name in methods}
    measured = all("ulira_gap" in c for name in methods for c in cells[name])
    ulira = {name: [c["ulira_gap"] for c in cells[name]] for name in methods} if measured else {}
    return {"F5": mia_nn_exposes({name: mia_nn[name] for name in prior}, floor),
            "F6": trw_smallest_gaps(mia_nn, ulira, method)}
