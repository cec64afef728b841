import numpy as np
import pytest
import torch

from unlearn.evaluation.memorization import memorization_scores, true_class_confidence


def test_the_score_is_in_confidence_minus_out_confidence():
    keep = np.array([[True, False], [False, True], [True, True], [False, False]])
    confidence = np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6], [0.3, 0.4]])
    np.testing.assert_allclose(memorization_scores(confidence, keep), [0.8 - 0.2, 0.7 - 0.3])


def test_a_sample_never_left_out_has_no_score():
    with pytest.raises(ValueError, match="one model that trained on it and one that did not"):
        memorization_scores(np.ones((2, 1)), np.ones((2, 1), dtype=bool))


def test_true_class_confidence_is_the_softmax_of_the_label():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(true_class_confidence(logits, torch.tensor([0, 1])),
                               [np.exp(2) / (np.exp(2) + 1), 0.5])
