from unlearn_pipeline.stages.findings import accurate_target


def test_f2_and_f3_compare_with_the_smoothest_target_that_keeps_accuracy():
    labels = ["none", "L2", "L1.5", "L1"]
    chosen, kept = accurate_target({"none": 97.0, "L2": 95.5, "L1.5": 93.0, "L1": 73.0}, labels, 2.0)
    assert chosen == "L2" and kept["passed"] and "within 2 points" in kept["why"]
    chosen, kept = accurate_target({"none": 97.0, "L2": 90.0, "L1.5": 93.0, "L1": 73.0}, labels, 2.0)
    assert chosen == "L1" and not kept["passed"] and kept["why"].startswith("no clipped target keeps accuracy")
