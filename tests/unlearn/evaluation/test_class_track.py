import numpy as np
import pytest
import torch

from unlearn.config import MiaNnConfig
from unlearn.evaluation.class_track import class_metrics, destinations, forget_inputs

LABELS = torch.tensor([0] * 60 + [1] * 60 + [2] * 60 + [3] * 60)
SPLITS = {"forget": np.arange(0, 40), "forget_test": np.arange(40, 60), "remain": np.arange(60, 200),
          "test": np.arange(200, 240)}


def _retrained_logits(rng) -> torch.Tensor:
    """A model that never saw class 0: sends it mostly to class 2, classifies the rest."""
    logits = rng.normal(size=(240, 4)) + 6 * np.eye(4)[LABELS.numpy()]
    logits[:60] = rng.normal(size=(60, 4)) + np.array([-8, 1, 3, 0])
    return torch.tensor(logits)


def _probs(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), 1).numpy()[forget_inputs(SPLITS)]


def test_a_retrained_like_model_matches_and_a_randomly_relabelled_one_is_exposed():
    rng = np.random.default_rng(0)
    retrained = [_probs(_retrained_logits(rng)) for _ in range(3)]
    cfg = MiaNnConfig(neighbours=2, folds=4)
    alike = class_metrics(_retrained_logits(rng), LABELS, SPLITS, retrained, 0, cfg, seed=0)
    assert alike["forget_acc"] == 0 and alike["retain_acc"] == 100 and alike["test_acc"] == 100
    assert abs(alike["mia_nn"] - 50) < 20 and alike["tv_to_retrain"] < 0.25 and alike["to_nearest"] > 80

    pushed = _retrained_logits(rng)
    pushed[:40] = torch.tensor(8 * np.eye(4)[rng.integers(1, 4, 40)])  # train samples sent to random classes
    exposed = class_metrics(pushed, LABELS, SPLITS, retrained, 0, cfg, seed=0)
    assert exposed["forget_acc"] == 0 and exposed["mia_nn"] > 85
    assert exposed["tv_to_retrain"] > alike["tv_to_retrain"] + 0.2


def test_destinations_are_percentages_per_class():
    logits = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(destinations(logits, np.array([0, 1, 2])), [0.0, 200 / 3, 100 / 3])
    assert destinations(logits, np.arange(4)).sum() == pytest.approx(100)
