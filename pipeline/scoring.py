"""Scoring a model of the random track: accuracies and the reference-model attacks on a
set of splits (stages ``evaluate`` and ``requests``), and the reference point of the gaps
when no model was retrained (``evaluate``, ``requests``, ``audit``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import numpy as np
    import torch

    from unlearn.config import Params
    from unlearn_pipeline.common import Prepared

# With retrain.enabled: false, the attacks' own reference point: forget samples no easier to
# tell from test samples than a coin flip.
ATTACK_REFERENCE = {"mia_rmia_auc": 50.0, "ulira_auc": 50.0}


def split_and_attack_metrics(logits: torch.Tensor, splits: Mapping[str, np.ndarray], data: Prepared, keep,
                             reference_logits: torch.Tensor, params: Params) -> tuple[dict, dict]:
    """A model's ``logits`` on every sample scored on ``splits`` (forget, remain, test): the
    accuracies and classic attacks (:func:`~unlearn.evaluation.split_metrics`) and RMIA and
    LiRA with the reference models; returns (metrics, per-sample attack scores)."""
    from unlearn.evaluation import split_metrics
    from unlearn.evaluation.suite import attack_metrics, attack_scores

    scores = attack_scores(logits, reference_logits, keep, data.labels, splits["test"], params.mia, params.seed)
    metrics = {**split_metrics(logits, data.labels, splits, params.mia.svc_samples),
               **attack_metrics(scores, splits, params.mia, params.seed)}
    return metrics, scores
