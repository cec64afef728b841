"""Stage ``import_model``: a user's ``original.checkpoint`` checked and imported, before anything trains.

Its own stage, so that what depends on the checkpoint depends on its content alone:
``train`` reads the imported weights (a file moved elsewhere under ``data/user/models/`` with
``original.checkpoint`` following it gives the same weights, so nothing after this stage
re-runs), and importing reads no ``train.*`` key (a new training recipe re-imports nothing).
"""

from __future__ import annotations

from pathlib import Path

from unlearn.config import Params
from unlearn.io import file_sha256, read_json, save_tensors, write_json
from unlearn_pipeline.common import CHECKPOINT_CHECKED, IMPORTED, IMPORTED_INFO, META, load_prepared, stage_device
from unlearn_pipeline.model_store import build_model, input_example
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

# what the stages that train wait for: DVC has no order-only dependency, so they depend on this
# file, whose content never changes (a new or moved checkpoint then re-runs none of them)
CHECKED_NOTE = {"checked": "original.checkpoint is unset, or loads into the model (weights only, every key and shape)"}


@stage("import_model", ("model", "original"))
def import_model(params: Params, run: TrackedRun) -> None:
    """With ``original.checkpoint`` set: load it into the model of ``model.*`` (weights only, every
    key and shape checked, a one-line error otherwise), save the weights as
    ``data/models/imported.pt``, record the file's sha256 and size in ``imported.json`` and
    register it in MLflow as ``unlearn-original``. Unset: an empty weights file and
    ``{"imported": false}``. Either way it writes :data:`CHECKED_NOTE` last."""
    checkpoint = params.original.checkpoint
    if checkpoint:
        from unlearn.models.checkpoint import load_checkpoint

        model = build_model(params, read_json(META))
        load_checkpoint(model, checkpoint, params.model.name)  # before the images load: a bad file fails at once
        data = load_prepared(stage_device(params))
        save_tensors(IMPORTED, model.state_dict())
        write_json(IMPORTED_INFO, {"imported": True, "sha256": file_sha256(checkpoint),
                                   "bytes": Path(checkpoint).stat().st_size})  # by content: its path may change
        run.set_tags({"original.checkpoint": checkpoint})
        run.log_model(model, "unlearn-original", input_example(data), tags={"original.checkpoint": checkpoint})
    else:
        save_tensors(IMPORTED, {})
        write_json(IMPORTED_INFO, {"imported": False})
    write_json(CHECKPOINT_CHECKED, CHECKED_NOTE)

