"""Model registry: ``create_model(name, ...)`` builds any registered architecture.

Every model takes pixel-space inputs in [0, 1] of shape (N, C, H, W) for any C, H, W;
normalisation is its first layer, so attack budgets are always in pixel units.
"""

from unlearn.models.registry import MODELS, Normalize, create_model
from unlearn.models import resnet, small_cnn  # noqa: F401  (register the architectures)

__all__ = ["MODELS", "Normalize", "create_model"]
