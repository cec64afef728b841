"""What the class track's stages share: the split that forgets one class, and the names of its models.

The class track forgets every training sample of ``class_track.forget_class``:
``retrain_class`` trains ``class_track.retrain_seeds`` models without it (the gold standard),
``unlearn_class@<method>`` unlearns it from the original model, and ``evaluate_class``
measures every model against the retrained ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearn.config import Params
from unlearn_pipeline.common import Prepared

if TYPE_CHECKING:
    import numpy as np



def retrain_name(k: int) -> str:
    """The name under ``data/models`` of the class track's k-th retrained model."""
    return f"class/retrain/seed_{k}"


def class_model(name: str) -> str:
    """The name under ``data/models`` of class-track model ``name`` (the original is shared)."""
    return name if name == "original" else f"class/{name}"


def class_split(data: Prepared, params: Params) -> dict[str, np.ndarray]:
    """The class track's forget / remain / test / forget_test indices (see ``class_splits``)."""
    from unlearn.data import class_splits

    return class_splits(data.labels.numpy(), data.splits["train"], data.splits["test"],
                        params.class_track.forget_class)


def retrain_seed(seed: int, k: int) -> int:
    """Weight-init and batch-order seed of the k-th retrained model (k = 0 is ``seed`` itself)."""
    return seed + k
