"""Unlearning methods, one registry for both tracks: a random forget set (AMUN and the
baselines it is compared with) and one whole class (TRW, boundary expanding and the
baselines that serve both; ``Method.tracks`` says which). Beyond the thesis's comparison
set, the baselines the field compares with now: NegGrad+, SCRUB (both tracks), SSD (both)
and UNSIR (class track).

``METHODS.get(name)`` returns a :class:`Method`; ``method.run(model, task, cfg, generator)``
unlearns ``task.forget`` from ``model`` in place with the settings ``cfg`` of
``params.yaml``'s ``unlearn.<name>`` (random track) or ``unlearn_class.<name>`` section.
"""

from unlearn.unlearning import class_baselines as _class_baselines  # noqa: F401  (registers be, scrub)
from unlearn.unlearning import methods as _methods  # noqa: F401  (registers the methods)
from unlearn.unlearning import neggrad_plus as _neggrad_plus  # noqa: F401  (registers neggrad_plus)
from unlearn.unlearning import ssd as _ssd  # noqa: F401  (registers ssd)
from unlearn.unlearning import trw as _trw  # noqa: F401  (registers trw)
from unlearn.unlearning import unsir as _unsir  # noqa: F401  (registers unsir)
from unlearn.unlearning.base import METHODS, ForgetTask, Method
from unlearn.unlearning.salun import FreezeOutsideMask, saliency_mask

__all__ = ["METHODS", "ForgetTask", "FreezeOutsideMask", "Method", "saliency_mask"]
