"""Per-epoch training checkpoints, so that an interrupted training resumes instead of starting over."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from unlearn.errors import DataError
from unlearn.io import load_tensors, save_tensors

log = logging.getLogger(__name__)


class EpochCheckpoint:
    """The file :func:`unlearn.training.train_` writes after every ``every`` epochs (and the
    last) and resumes from: a ResNet-18's state is about 90 MB, so a GPU epoch of a few
    seconds may write it only every few epochs.

    The file is a plain dict of tensors and numbers (loaded with ``weights_only=True``):
    the model, optimiser, scheduler, generator and callback states, the epochs done with
    their statistics, and ``fingerprint``. The caller derives the fingerprint from
    everything the training depends on (params, data, code); a file written under
    another fingerprint, or one that cannot be read, is ignored and training starts over.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"checkpoint every {every} epochs: must be >= 1")
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.every = every

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none to resume from."""
        if not self.path.exists():
            return None
        try:
            state = load_tensors(self.path)
        except DataError as exc:
            log.warning("%s; starting over", exc)
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            log.info("%s: written for other params, data or code; starting over", self.path)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        save_tensors(self.path, {**state, "fingerprint": self.fingerprint})
