import numpy as np
import pytest

from unlearn.evaluation.mia_nn import (features, mia_nn_auc, nearest_class, neighbour_classes,
                                       total_variation)


def _probs(rng, n, centre):
    logits = rng.normal(size=(n, 5)) + np.asarray(centre)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_nearest_and_neighbour_classes_come_from_the_retrained_models():
    rng = np.random.default_rng(0)
    retrained = [_probs(rng, 200, [0, 3, 1, 0, 0]) for _ in range(3)]
    assert nearest_class(retrained, forget_class=0) == 1
    neighbours = neighbour_classes(retrained, forget_class=1, k=2)
    assert len(neighbours) == 2 and neighbours[0] == 2 and 1 not in neighbours
    assert nearest_class([_probs(rng, 50, [5, 0, 0, 0, 0])], forget_class=0) != 0


def test_attack_is_at_chance_for_alike_outputs_and_high_when_train_samples_were_pushed_away():
    rng = np.random.default_rng(1)
    test = _probs(rng, 150, [0, 3, 1, 0, 0])  # never-seen forget-class samples go to class 1
    alike = _probs(rng, 150, [0, 3, 1, 0, 0])
    assert abs(mia_nn_auc(features(alike), features(test)) - 50) < 10
    pushed = np.eye(5)[rng.integers(0, 5, 150)] * 0.9 + 0.02  # train samples sent to random classes
    assert mia_nn_auc(features(pushed), features(test)) > 90
    neighbours = np.array([1, 2])
    assert mia_nn_auc(features(pushed, "neighbours", neighbours), features(test, "neighbours", neighbours)) > 80
    with pytest.raises(ValueError, match="at least 5"):
        mia_nn_auc(features(test[:3]), features(test))
    with pytest.raises(ValueError, match="unknown MIA-NN features"):
        features(test, "raw")


def test_total_variation():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert total_variation(p, p) == 0
    assert total_variation(p, np.array([[0.0, 1.0], [0.5, 0.5]])) == pytest.approx(0.5)
