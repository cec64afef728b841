import numpy as np
import pytest

from unlearn.findings import (amun_smallest_gap, class_study_findings, control, f1_memorised, interval,
                              rmia_stronger, seed_study_findings, smoother_more_transferable, smoother_smaller_gap, verdict)

MARGINS = {"F1": 0.5, "F2": 0.5, "F3": 5.0, "F4": 2.0, "F5": 2.0, "F6": 2.0}
PASSED = {"rule": "test", "passed": True, "why": "detected"}


def test_interval_is_the_student_t_interval_of_the_mean():
    stats = interval([1.0, 2.0, 3.0])
    assert stats["mean"] == 2.0 and stats["ci95"] == pytest.approx(4.302653 / 3 ** 0.5, abs=1e-4)
    assert stats["low"] == pytest.approx(2.0 - stats["ci95"], abs=1e-4)
    assert interval([5.0]) == {"mean": 5.0, "ci95": 0.0, "low": 5.0, "high": 5.0}
    assert interval([1.0, 2.0, 3.0], 0.975)["ci95"] > stats["ci95"]


def test_verdict_is_yes_no_or_inconclusive_by_the_adjusted_intervals():
    judged = verdict({"a": [1.0, 1.1, 0.9], "b": [2.0, 2.2, 1.8]}, margin=0.05)
    assert (judged["holds"], judged["why"], judged["level"]) == ("yes", "", 0.975)  # Bonferroni over 2
    judged = verdict({"a": [1.0, 1.1, 0.9], "b": [2.0, -1.0, 0.5]}, margin=0.5)
    assert judged["holds"] == "inconclusive" and judged["why"].startswith("b: +0.50, 97.5% interval [")
    assert "over 3 cells" in judged["why"] and judged["detectable"] == judged["intervals"]["b"]["ci95"]
    judged = verdict({"a": [1.0, 1.1, 0.9], "b": [-1.0, -1.2, -0.9]}, margin=0.5)
    assert judged["holds"] == "no" and "below 0, against the claim" in judged["why"]


def test_a_tight_interval_inside_the_margin_is_a_tie_and_refutes_the_claim():
    judged = verdict({"a": [0.1, -0.1, 0.05, -0.05, 0.0, 0.02]}, margin=0.5)
    assert judged["holds"] == "no" and "inside the margin +-0.5, a tie" in judged["why"]
    # the same numbers against a smaller margin: the interval is wider than it, so no verdict
    assert verdict({"a": [0.1, -0.1, 0.05, -0.05, 0.0, 0.02]}, margin=0.05)["holds"] == "inconclusive"
    # a positive difference whose interval excludes 0 supports the claim, however small
    assert verdict({"a": [0.2, 0.21, 0.19, 0.2]}, margin=0.5)["holds"] == "yes"


def test_a_failed_positive_control_makes_the_finding_untestable():
    blind = control("original - retrain", [0.0, 0.1, -0.1])
    assert not blind["passed"] and "includes 0" in blind["why"]
    judged = verdict({"a": [5.0, 5.1, 4.9]}, margin=0.5, control=blind)
    assert judged["holds"] == "untestable" and judged["why"].startswith("positive control failed: original")
    tied = control("RMIA", [0.0, 0.0, 0.0], tied=True)
    assert not tied["passed"] and "tied" in tied["why"]
    assert control("original - retrain", [4.0, 5.0, 6.0])["passed"]


def test_a_difference_not_measured_in_every_cell_is_inconclusive():
    assert verdict({"a": [1.0, float("nan"), 1.2]}, margin=0.5)["holds"] == "inconclusive"


def _simulated(effect: float, cells: int, comparisons: int, draws: int, rng) -> np.ndarray:
    """How often each verdict comes out over ``draws`` simulated studies: ``comparisons``
    differences of ``cells`` cells each, standard normal noise around ``effect``."""
    counts = {"yes": 0, "no": 0, "inconclusive": 0}
    for _ in range(draws):
        noise = rng.standard_normal((comparisons, cells)) + effect
        counts[verdict({f"d{i}": row for i, row in enumerate(noise)}, margin=0.1)["holds"]] += 1
    return {k: v / draws for k, v in counts.items()}


@pytest.mark.parametrize("comparisons", [1, 4])
def test_a_true_null_says_yes_in_at_most_5_percent_of_studies(comparisons):
    rates = _simulated(0.0, 10, comparisons, 2000, np.random.default_rng(comparisons))
    assert rates["yes"] <= 0.05
    assert rates["no"] <= 0.05 + 0.02  # "no" needs an interval below 0 (or a tie): as rare as a false yes


@pytest.mark.parametrize("comparisons", [1, 4])
def test_an_effect_of_3_half_widths_says_yes_in_at_least_80_percent_of_studies(comparisons):
    from scipy import stats

    cells = 10
    level = 1 - 0.05 / comparisons
    half_width = stats.t.ppf(0.5 + level / 2, cells - 1) / np.sqrt(cells)  # of noise with std 1
    rates = _simulated(3 * half_width, cells, comparisons, 2000, np.random.default_rng(10 + comparisons))
    assert rates["yes"] >= 0.8 and rates["no"] == 0.0


def test_f1_compares_each_baseline_with_the_amun_of_its_access_group():
    gaps = {"amun": [0.5, 0.6, 0.4], "amun_no_remain": [1.0, 1.2, 0.8], "ft": [2.0, 2.1, 1.9],
            "ga": [0.1, 0.2, 0.0]}
    finding = amun_smallest_gap(gaps, {"amun": ["ft"], "amun_no_remain": ["ga"]}, 0.5, positive_control=PASSED)
    assert set(finding["evidence"]["differences"]) == {"ft - amun", "ga - amun_no_remain"}
    assert finding["holds"] == "no" and finding["why"].startswith("ga - amun_no_remain: -0.90")
    assert finding["cells"] == 3 and finding["evidence"]["mean_gap"]["ft"] == 2.0
    assert finding["margin"] == 0.5 and finding["control"] is PASSED and finding["detectable"] > 0
    assert amun_smallest_gap(gaps, {"amun": ["ft"]}, 0.5, positive_control=PASSED)["holds"] == "yes"


def test_the_random_track_control_needs_the_original_told_from_retrain():
    base = {"avg_gap": 0.0, "mia_svc": 50.0, "mia_loss_auc": 50.0}
    cells = {"original": [{**base, "mia_rmia_auc": a, "avg_gap": 3.0} for a in (60.0, 61.0, 59.0)],
             "retrain": [{**base, "mia_rmia_auc": 50.0} for _ in range(3)],
             "amun": [{**base, "mia_rmia_auc": 50.0, "avg_gap": 0.5} for _ in range(3)],
             "ft": [{**base, "mia_rmia_auc": 50.0, "avg_gap": g} for g in (2.0, 2.1, 1.9)]}
    found = seed_study_findings(cells, MARGINS)
    assert found["F1"]["holds"] == "yes" and found["F1"]["control"]["passed"]
    for c in cells["original"]:
        c["mia_rmia_auc"] = 50.0  # every score tied: the attack saw nothing
    found = seed_study_findings(cells, MARGINS)
    assert found["F1"]["holds"] == "untestable" and found["F4"]["holds"] == "untestable"
    assert "tied" in found["F1"]["why"]


def test_f2_compares_the_unclipped_with_the_chosen_smooth_target_per_seed():
    gaps = {"none": {"amun_no_remain": [3.0, 3.5, 2.5], "amun": [1.0, 1.0, 1.0]},
            "L2": {"amun_no_remain": [1.0, 1.4, 0.7], "amun": [1.2, 0.8, 1.0]},
            "L1": {"amun_no_remain": [9.0, 9.5, 8.5], "amun": [1.0, 1.0, 1.0]}}
    finding = smoother_smaller_gap(gaps, {"none": {}, "L2": {}}, "none", "L2", 0.5, positive_control=PASSED)
    assert finding["holds"] == "yes" and list(finding["evidence"]["differences"]) == ["amun_no_remain: none - L2"]
    assert finding["evidence"]["other_differences"]["amun: none - L2"]["mean"] == 0.0
    assert finding["evidence"]["compared"] == ["none", "L2"]


def test_f3_is_inconclusive_when_a_clipped_model_is_not_smooth():
    rates = {"l2": {"L1->L1": [60.0, 62.0, 61.0], "none->none": [40.0, 41.0, 39.0]},
             "linf": {"L1->L1": [70.0, 72.0, 71.0], "none->none": [50.0, 52.0, 49.0]}}
    assert smoother_more_transferable(rates, True, "none", "L1", 5.0, positive_control=PASSED)["holds"] == "yes"
    finding = smoother_more_transferable(rates, False, "none", "L1", 5.0, positive_control=PASSED)
    assert finding["holds"] == "inconclusive" and "1.05 x target^layers" in finding["why"]
    rates["linf"]["L1->L1"] = [30.0, 31.0, 29.0]
    assert smoother_more_transferable(rates, True, "none", "L1", 5.0, positive_control=PASSED)["holds"] == "no"


def test_f4_compares_rmia_with_the_svc_feature_on_the_original():
    finding = rmia_stronger([62.0, 64.0, 63.0], [55.0, 56.0, 54.0], {"rmia": 5, "svc": 2}, 2.0,
                            positive_control=PASSED)
    assert finding["holds"] == "yes" and finding["evidence"]["methods_told_from_retrain"] == {"rmia": 5, "svc": 2}
    assert rmia_stronger([50.0, 51.0, 50.5], [55.0, 56.0, 55.2], {}, 2.0)["holds"] == "no"


def _class_cells(exposed: bool = True) -> dict:
    original = (20.0, 21.0, 20.5) if exposed else (2.0, 1.0, 1.5)  # unexposed: around retrain's floor
    return {"retrain": [{"mia_nn_floor": f, "ulira_auc": 50.0} for f in (1.0, 2.0, 1.5)],
            "original": [{"mia_nn_gap": g, "ulira_auc": 48.5 + g} for g in original],
            "trw": [{"mia_nn_gap": g, "ulira_gap": u} for g, u in ((1.0, 2.0), (2.0, 1.0), (1.5, 1.5))],
            "trw_maxent": [{"mia_nn_gap": g, "ulira_gap": g} for g in (9.0, 9.0, 9.0)],
            "ft": [{"mia_nn_gap": g, "ulira_gap": u} for g, u in ((20.0, 10.0), (22.0, 12.0), (21.0, 11.0))],
            "ga": [{"mia_nn_gap": g, "ulira_gap": u} for g, u in ((1.0, 10.0), (2.5, 12.0), (1.0, 11.0))]}


def test_class_study_findings_compare_prior_methods_with_the_noise_floor_and_with_trw():
    cells = _class_cells()
    found = class_study_findings(cells, MARGINS, variants=["trw_maxent"])
    assert found["F5"]["holds"] in ("no", "inconclusive") and found["F5"]["why"].startswith("ga - retrain floor")
    assert set(found["F5"]["evidence"]["differences"]) == {"ft - retrain floor", "ga - retrain floor"}
    assert found["F6"]["holds"] in ("no", "inconclusive") and found["F6"]["why"].startswith("MIA-NN: ga - trw")
    assert found["F6"]["evidence"]["variants_mean_gap"]["MIA-NN"] == {"trw_maxent": 9.0}
    del cells["ga"]
    found = class_study_findings(cells, MARGINS, variants=["trw_maxent"])
    assert found["F5"]["holds"] == "yes" and found["F6"]["holds"] == "yes" and found["F6"]["cells"] == 3


def test_the_class_track_control_leaves_out_an_attack_that_does_not_expose_the_original():
    cells = _class_cells(exposed=False)
    del cells["ga"]
    found = class_study_findings(cells, MARGINS, variants=["trw_maxent"])
    assert found["F5"]["holds"] == "untestable" and found["F6"]["holds"] == "untestable"
    for c in cells["original"]:
        c["ulira_auc"] = 80.0 + c["mia_nn_gap"]  # U-LiRA sees the original, MIA-NN does not
    found = class_study_findings(cells, MARGINS, variants=["trw_maxent"])
    assert found["F5"]["holds"] == "untestable" and found["F6"]["holds"] == "yes"
    assert list(found["F6"]["evidence"]["differences"]) == ["U-LiRA: ft - trw"]
    assert found["F6"]["claim"].endswith("(judged without MIA-NN (control failed))")


def test_f6_falls_back_to_mia_nn_when_u_lira_is_off():
    cells = {"retrain": [{"mia_nn_floor": 1.0}] * 3,
             "original": [{"mia_nn_gap": g} for g in (20.0, 22.0, 21.0)],
             "trw": [{"mia_nn_gap": g} for g in (1.0, 2.0, 1.5)],
             "ft": [{"mia_nn_gap": g} for g in (20.0, 22.0, 21.0)]}
    found = class_study_findings(cells, MARGINS)
    assert found["F6"]["holds"] == "yes" and found["F6"]["claim"].endswith("(judged without U-LiRA (off))")
    assert list(found["F6"]["evidence"]["differences"]) == ["MIA-NN: ft - trw"]


def test_a_measured_difference_is_inside_outside_or_undecided_against_a_margin():
    from unlearn.findings import against_margin

    assert against_margin(1.0, 2.0, 5.0, 400)["answer"] == "inside"
    assert against_margin(-9.0, 2.0, 5.0, 400)["answer"] == "outside"
    undecided = against_margin(7.71, 9.0, 5.0, 40)  # an audit of 40 samples: the interval straddles the margin
    assert undecided["answer"] == "undecided"
    assert undecided["samples_needed"] == pytest.approx(40 * (9.0 / 2.71) ** 2, abs=1)
    assert against_margin(5.0, 1.0, 5.0, 40)["samples_needed"] is None


def test_baselines_beyond_the_thesis_are_reported_beside_f1_and_never_judged():
    base = {"mia_svc": 50.0, "mia_loss_auc": 50.0, "mia_rmia_auc": 50.0}
    cells = {"original": [{**base, "mia_rmia_auc": a, "avg_gap": 3.0} for a in (60.0, 61.0, 59.0)],
             "retrain": [{**base, "avg_gap": 0.0} for _ in range(3)],
             "amun": [{**base, "avg_gap": 0.5} for _ in range(3)],
             "ft": [{**base, "avg_gap": g} for g in (2.0, 2.1, 1.9)],
             "neggrad_plus": [{**base, "avg_gap": g} for g in (0.1, 0.2, 0.0)]}  # beats AMUN: would refute F1
    found = seed_study_findings(cells, MARGINS)["F1"]
    assert found["holds"] == "yes" and set(found["evidence"]["differences"]) == {"ft - amun"}
    beside = found["evidence"]["beside_thesis"]["neggrad_plus"]
    assert beside["mean"] == pytest.approx(0.1) and beside["difference"]["mean"] == pytest.approx(-0.4)


def test_class_baselines_beyond_the_thesis_are_beside_f5_and_f6():
    cells = _class_cells()
    del cells["ga"]
    cells["unsir"] = [{"mia_nn_gap": g, "ulira_gap": u} for g, u in ((30.0, 40.0), (31.0, 41.0), (29.0, 39.0))]
    found = class_study_findings(cells, MARGINS, variants=["trw_maxent"])
    assert found["F5"]["holds"] == "yes" and found["F6"]["holds"] == "yes"  # unsir is not judged
    assert "unsir - retrain floor" not in found["F5"]["evidence"]["differences"]
    assert found["F5"]["evidence"]["beside_thesis"]["unsir"]["mean"] == pytest.approx(30.0)
    assert set(found["F6"]["evidence"]["beside_thesis"]) == {"MIA-NN", "U-LiRA"}
    assert found["F6"]["evidence"]["beside_thesis"]["MIA-NN"]["unsir"]["difference"]["mean"] > 0


def _f1_cells(original_auc: tuple[float, ...], ft_gaps: tuple[float, ...]) -> dict:
    base = {"mia_svc": 50.0, "mia_loss_auc": 50.0, "mia_rmia_auc": 50.0}
    return {"original": [{**base, "mia_rmia_auc": a, "avg_gap": 3.0} for a in original_auc],
            "retrain": [{**base, "avg_gap": 0.0} for _ in original_auc],
            "amun": [{**base, "avg_gap": 0.5} for _ in original_auc],
            "ft": [{**base, "avg_gap": g} for g in ft_gaps]}


def test_f1_memorised_is_judged_at_the_hardest_level_and_reports_every_level():
    by_level = {"high": _f1_cells((60.0, 61.0, 59.0), (0.4, 0.5, 0.6)),  # a tie with AMUN when it is hard
                "low": _f1_cells((50.0, 50.0, 50.0), (2.0, 2.1, 1.9))}  # the original is not detected at all
    found = f1_memorised(by_level, 0.5, forget_scores={"low": -0.01, "high": 0.4})
    assert found["difficulty"] == "high" and found["thesis"] is False and found["holds"] == "no"
    assert "high-memorisation pool" in found["claim"] and "not a claim of the thesis" in found["claim"]
    assert found["rule"].startswith("at the hardest level studied (high), F1's rule")
    levels = found["evidence"]["by_difficulty"]
    assert list(levels) == ["low", "high"]  # easiest first, whatever the input order
    assert levels["low"]["holds"] == "untestable" and not levels["low"]["control_passed"]
    assert levels["high"]["holds"] == "no" and levels["high"]["forget_score_mean"] == 0.4
    assert levels["high"]["mean_gap"]["ft"] == pytest.approx(0.5)
    assert f1_memorised({"low": by_level["low"], "medium": _f1_cells((60.0, 61.0, 59.0), (2.0, 2.1, 1.9))},
                        0.5)["difficulty"] == "medium"
