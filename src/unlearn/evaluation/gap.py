"""How far a model's metrics are from the retrained model's (no torch: the report reads only JSON)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

ACCURACY_KEYS = ("forget_acc", "retain_acc", "test_acc")
METRIC_KEYS = (*ACCURACY_KEYS, "mia_rmia_auc")  # the thesis's Avg Gap: RMIA's forget-vs-test AUC
SVC_KEYS = (*ACCURACY_KEYS, "mia_svc")  # SalUn's: MIA-efficacy
CLASS_KEYS = (*ACCURACY_KEYS, "mia_nn")  # the class track's: MIA-NN's forget-class train-vs-test AUC


def avg_gap(metrics: Mapping[str, float], reference: Mapping[str, float], keys=METRIC_KEYS) -> float:
    """Mean absolute difference over ``keys`` (forget, retain and test accuracy and one
    attack's score) between a model's metrics and the retrained model's (the "Avg Gap"
    of the unlearning papers; 0 is ideal)."""
    return float(np.mean([abs(metrics[k] - reference[k]) for k in keys]))
