import numpy as np
import pytest
import torch

from unlearn.evaluation.mia_svc import mia_svc, true_label_confidence


def test_confidence_is_the_true_label_probability():
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    conf = true_label_confidence(logits, torch.tensor([1, 0]))
    assert conf[0] == pytest.approx(0.5) and conf[1] > 0.99


def test_forget_that_looks_like_test_is_called_non_member():
    rng = np.random.default_rng(0)
    remain = rng.uniform(0.95, 1.0, 500)  # members: confident
    test = rng.uniform(0.2, 0.8, 100)  # non-members: less so
    assert mia_svc(remain, test, rng.uniform(0.2, 0.8, 50)) > 90
    assert mia_svc(remain, test, rng.uniform(0.95, 1.0, 50)) < 10
    with pytest.raises(ValueError, match="non-empty"):
        mia_svc(remain, test, np.array([]))


def test_the_svc_fits_on_at_most_samples_per_class_and_small_sets_are_used_whole():
    rng = np.random.default_rng(1)
    remain, test = rng.beta(8, 1, 6000), rng.beta(3, 2, 5000)
    forget = np.concatenate([rng.beta(8, 1, 300), rng.beta(3, 2, 300)])
    capped, whole = mia_svc(remain, test, forget, samples=1000), mia_svc(remain, test, forget)
    assert abs(capped - whole) < 5  # the same rule, learnt from 2,000 points instead of 10,000
    small = test[:400]
    assert mia_svc(remain, small, forget, samples=1000) == mia_svc(remain, small, forget)
