import pytest

from unlearn.findings import (amun_smallest_gap, interval, rmia_stronger, smoother_more_transferable,
                              smoother_smaller_gap, verdict)


def test_interval_is_the_student_t_interval_of_the_mean():
    stats = interval([1.0, 2.0, 3.0])
    assert stats["mean"] == 2.0 and stats["ci95"] == pytest.approx(4.302653 / 3 ** 0.5, abs=1e-4)
    assert stats["low"] == pytest.approx(2.0 - stats["ci95"], abs=1e-4)
    assert interval([5.0]) == {"mean": 5.0, "ci95": 0.0, "low": 5.0, "high": 5.0}


def test_verdict_needs_every_interval_above_zero():
    assert verdict({"a": [1.0, 1.1, 0.9], "b": [2.0, 2.2, 1.8]})[:2] == ("yes", "")
    holds, why, _ = verdict({"a": [1.0, 1.1, 0.9], "b": [2.0, -1.0, 0.5]})
    assert holds == "inconclusive" and why.startswith("b: mean +0.50, 95% interval [") and "3 cells" in why
    holds, why, _ = verdict({"a": [1.0, 1.1, 0.9], "b": [-1.0, -1.2, 0.1]})
    assert holds == "no" and why == "b: mean -0.70 (the claim needs > 0)"
    assert verdict({"a": [0.0, 0.0]})[0] == "no"  # no difference at all is not a smaller gap


def test_f1_compares_each_baseline_with_the_amun_of_its_access_group():
    gaps = {"amun": [0.5, 0.6, 0.4], "amun_no_remain": [1.0, 1.2, 0.8], "ft": [2.0, 2.1, 1.9],
            "ga": [0.9, 1.0, 0.7]}
    finding = amun_smallest_gap(gaps, {"amun": ["ft"], "amun_no_remain": ["ga"]})
    assert set(finding["evidence"]["differences"]) == {"ft - amun", "ga - amun_no_remain"}
    assert finding["holds"] == "no" and finding["why"].startswith("ga - amun_no_remain: mean -0.13")
    assert finding["cells"] == 3 and finding["evidence"]["mean_gap"]["ft"] == 2.0
    assert amun_smallest_gap(gaps, {"amun": ["ft"]})["holds"] == "yes"


def test_f2_compares_the_unclipped_with_the_smoothest_models_per_seed():
    gaps = {"none": {"amun_no_remain": [3.0, 3.5, 2.5], "amun": [1.0, 1.0, 1.0]},
            "L2": {"amun_no_remain": [2.0, 2.5, 1.5], "amun": [1.0, 1.0, 1.0]},
            "L1": {"amun_no_remain": [1.0, 1.4, 0.7], "amun": [1.2, 0.8, 1.0]}}
    finding = smoother_smaller_gap(gaps, {"none": {}, "L1": {}})
    assert finding["holds"] == "yes" and list(finding["evidence"]["differences"]) == ["amun_no_remain: none - L1"]
    assert finding["evidence"]["other_differences"]["amun: none - L1"]["mean"] == 0.0


def test_f3_is_inconclusive_when_a_clipped_model_is_not_smooth():
    rates = {"l2": {"L1->L1": [60.0, 62.0, 61.0], "none->none": [40.0, 41.0, 39.0]},
             "linf": {"L1->L1": [70.0, 72.0, 71.0], "none->none": [50.0, 52.0, 49.0]}}
    assert smoother_more_transferable(rates, True, "none", "L1")["holds"] == "yes"
    finding = smoother_more_transferable(rates, False, "none", "L1")
    assert finding["holds"] == "inconclusive" and "1.05 x target^layers" in finding["why"]
    rates["linf"]["L1->L1"] = [30.0, 31.0, 29.0]
    assert smoother_more_transferable(rates, True, "none", "L1")["holds"] == "no"


def test_f4_compares_rmia_with_the_svc_feature_on_the_original():
    finding = rmia_stronger([62.0, 64.0, 63.0], [55.0, 56.0, 54.0], {"rmia": 5, "svc": 2})
    assert finding["holds"] == "yes" and finding["evidence"]["methods_told_from_retrain"] == {"rmia": 5, "svc": 2}
    assert rmia_stronger([50.0, 51.0], [55.0, 56.0], {})["holds"] == "no"


def test_class_study_findings_compare_prior_methods_with_the_noise_floor_and_with_trw():
    from unlearn.findings import class_study_findings

    cells = {"retrain": [{"mia_nn_floor": f} for f in (1.0, 2.0, 1.5)],
             "trw": [{"mia_nn_gap": g, "ulira_gap": u} for g, u in ((1.0, 2.0), (2.0, 1.0), (1.5, 1.5))],
             "ft": [{"mia_nn_gap": g, "ulira_gap": u} for g, u in ((20.0, 10.0), (22.0, 12.0), (21.0, 11.0))],
             "ga": [{"mia_nn_gap": g, "ulira_gap": u} for g, u in ((1.0, 10.0), (2.5, 12.0), (1.0, 11.0))]}
    found = class_study_findings(cells)
    assert found["F5"]["holds"] == "no" and found["F5"]["why"].startswith("ga - retrain floor")
    assert set(found["F5"]["evidence"]["differences"]) == {"ft - retrain floor", "ga - retrain floor"}
    assert found["F6"]["holds"] == "no" and found["F6"]["why"].startswith("MIA-NN: ga - trw")
    del cells["ga"]
    found = class_study_findings(cells)
    assert found["F5"]["holds"] == "yes" and found["F6"]["holds"] == "yes" and found["F6"]["cells"] == 3


def test_f6_falls_back_to_mia_nn_when_u_lira_is_off():
    from unlearn.findings import class_study_findings

    cells = {"retrain": [{"mia_nn_floor": 1.0}] * 3,
             "trw": [{"mia_nn_gap": g} for g in (1.0, 2.0, 1.5)],
             "ft": [{"mia_nn_gap": g} for g in (20.0, 22.0, 21.0)]}
    found = class_study_findings(cells)
    assert found["F6"]["holds"] == "yes" and found["F6"]["claim"].endswith("(U-LiRA off: MIA-NN only)")
    assert list(found["F6"]["evidence"]["differences"]) == ["MIA-NN: ft - trw"]
