"""Stage ``unlearn_class@<method>``, one per section of params.yaml's ``unlearn_class``: the
forgotten class unlearned from the original model."""

from __future__ import annotations

from unlearn.config import Params
from unlearn.errors import ConfigError
from unlearn.io import save_tensors, write_json
from unlearn_pipeline.class_track import class_model, class_split
from unlearn_pipeline.common import load_prepared, model_path, runtime_path, stage_device
from unlearn_pipeline.model_store import input_example, load_model
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun
from unlearn_pipeline.ulira import unlearn_shadows


@stage("unlearn_class", ("seed", "model", "class_track.forget_class", "unlearn_class.${item}", "ulira.shadows",
                        "execution.precision"))
def unlearn_class(params: Params, run: TrackedRun, method_name: str) -> None:
    """Unlearn class ``class_track.forget_class`` from the original model with ``method_name``
    (settings ``unlearn_class.<method>``): ``data/models/class/<method>.pt`` and its runtime;
    then U-LiRA's shadows of the class track unlearned the same way."""
    import time

    import torch

    from unlearn.unlearning import METHODS, ForgetTask

    method = METHODS.get(method_name)
    if "class" not in method.tracks:
        raise ConfigError(f"unlearn_class: method {method_name!r} is not a class-unlearning method")
    cfg = getattr(params.unlearn_class, method_name)
    data = load_prepared(stage_device(params))
    split = class_split(data, params)
    model = load_model("original", params, data.meta)
    task = ForgetTask(data.images, data.labels, torch.as_tensor(split["forget"]), torch.as_tensor(split["remain"]),
                      len(data.meta["classes"]), holdout=torch.as_tensor(data.splits["test"]))
    extra = {}
    if method_name.startswith("trw"):  # the tilt strength it solves for, for the report
        from unlearn.unlearning.trw import targets_for

        extra["tilt_strength"] = round(targets_for(model, task, cfg)[1], 4)
    start = time.perf_counter()
    method.run(model, task, cfg, torch.Generator().manual_seed(params.seed))
    seconds = time.perf_counter() - start
    name = class_model(method_name)
    save_tensors(model_path(name), model.state_dict())
    write_json(runtime_path(name), {"runtime_s": round(seconds, 3), "remain_access": method.remain_access(cfg),
                                    **extra})
    run.log_metrics({"runtime_s": seconds})
    run.log_model(model, f"unlearn-class-{method_name}", input_example(data))
    unlearn_shadows(method_name, cfg, "class", params, data)
