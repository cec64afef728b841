"""Unlearning methods for a random forget set: AMUN and the baselines it is compared with.

``METHODS.get(name)`` returns a :class:`Method`; ``method.run(model, task, cfg, generator)``
unlearns ``task.forget`` from ``model`` in place with the settings ``cfg`` of
``params.yaml``'s ``unlearn.<name>`` section.
"""

from unlearn.unlearning import methods as _methods  # noqa: F401  (registers the methods)
from unlearn.unlearning.base import METHODS, ForgetTask, Method
from unlearn.unlearning.salun import FreezeOutsideMask, saliency_mask

__all__ = ["METHODS", "ForgetTask", "FreezeOutsideMask", "Method", "saliency_mask"]
