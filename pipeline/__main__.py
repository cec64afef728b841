"""``python -m unlearn_pipeline <stage> [item ...]``: what each dvc.yaml ``cmd`` calls.

Only the stage's own module is imported (:func:`unlearn_pipeline.stages.load_stage`)."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import re
import signal
import sys

from unlearn.errors import ConfigError, UserError


def run_stage(name: str, items: list[str], params_file: str = "params.yaml", companion: bool = True) -> None:
    """Validate params, then run stage ``name`` inside one MLflow run (its MLflow calls made by a
    companion process when ``companion``: see :func:`unlearn_pipeline.tracking.start_companion`)."""
    from unlearn.config import load_params
    from unlearn_pipeline.stages import load_stage
    from unlearn_pipeline.tracking import finish_companion, start_companion

    stage = load_stage(name)
    _check_items(name, stage.fn, items)
    params = load_params(params_file)
    if companion:
        start_companion()  # MLflow's import overlaps torch's and the stage's work
    try:
        _run_tracked(name, stage, items, params)
    finally:
        finish_companion()


def _run_tracked(name: str, stage, items: list[str], params) -> None:
    from unlearn.device import precision
    from unlearn_pipeline.common import device_tags
    from unlearn_pipeline.tracking import TrackedRun

    if stage.threads is not None:
        pin_threads(stage.threads)
    sections = {}
    for section in (*stage.sections, *stage.untracked):  # e.g. "unlearn.${item}" -> params.unlearn.<item>
        key = section.replace("${item}", items[0] if items else "")
        sections[key] = _dump(_section(params, key, name))
    # DVC names the stage it runs in DVC_STAGE (e.g. "unlearn@amun"); the flow does too
    addressing = os.environ.get("DVC_STAGE") or " ".join([name, *items])
    tags = {"dvc.stage": addressing, **device_tags(params)}
    with TrackedRun(addressing, sections, tags=tags) as run, precision(params.execution.precision):
        stage.fn(params, run, *items)


def pin_threads(threads: int) -> None:
    """Pin this process (torch's intra-op threads, and the BLAS / OpenMP pools numpy and
    scikit-learn use) and the worker processes it spawns to ``threads`` threads: results
    depend on the thread count at the level of float rounding."""
    import torch
    from threadpoolctl import threadpool_limits

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    threadpool_limits(threads)


def _check_items(stage: str, fn, items: list[str]) -> None:
    """The items must fit the stage function's signature after ``(params, run)`` and be plain names."""
    slots = list(inspect.signature(fn).parameters.values())[2:]
    fixed = [slot.name for slot in slots if slot.kind is not slot.VAR_POSITIONAL]
    variadic = [slot.name for slot in slots if slot.kind is slot.VAR_POSITIONAL]
    if len(items) < len(fixed) + len(variadic) or (not variadic and len(items) > len(fixed)):
        expected = " ".join([*(f"<{slot}>" for slot in fixed), *(f"<{slot}> ..." for slot in variadic)])
        raise ConfigError(f"{stage}: takes {expected or 'no items'}; got {' '.join(map(repr, items)) or 'none'}")
    for item in items:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]*", item):
            raise ConfigError(f"{stage}: item {item!r} is not a name (letters, digits, '_' and '-')")


def _section(params, key: str, stage: str):
    """``params.<key>`` for a dotted key; a missing one means the stage's item is unknown."""
    value = params
    for depth, part in enumerate(key.split(".")):
        if part not in type(value).model_fields:
            known = ", ".join(type(value).model_fields)
            raise ConfigError(f"{stage}: unknown item {part!r}: params.yaml has no section "
                              f"{'.'.join(key.split('.')[:depth + 1])}; known: {known}")
        value = getattr(value, part)
    return value


def _dump(value):
    return value.model_dump() if hasattr(value, "model_dump") else value


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that temporary files are removed and the MLflow run is closed."""


def _terminate(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None, companion: bool = True) -> int:
    """Run one stage in this process; ``companion=False`` where MLflow is imported already (a
    stage run by :mod:`unlearn_pipeline.stage_server`), so that a companion would save nothing."""
    from unlearn_pipeline.stages import MODULES

    parser = argparse.ArgumentParser(prog="python -m unlearn_pipeline", description="Run one pipeline stage.")
    parser.add_argument("stage", choices=sorted(MODULES))
    parser.add_argument("items", nargs="*", help="the foreach item(s), e.g. a model name for evaluate")
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        run_stage(args.stage, args.items, args.params, companion=companion)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        print(f"error: {args.stage} interrupted ({name}); its outputs are untouched or absent, and a re-run "
              "resumes training from the last epoch checkpoint", file=sys.stderr)
        return 128 + (signal.SIGTERM if name == "SIGTERM" else signal.SIGINT)
    return 0


def launch() -> int:
    """The command line: a warm stage server runs the stage when one is up (and one is started
    for the next stage when none is), else this process does."""
    from unlearn_pipeline.stage_server import Interrupted, run_served

    try:
        status = run_served(sys.argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:  # e.g. Ctrl-C while a starting server had not taken the stage yet
        print(f"error: interrupted ({signal.Signals(exc.signum).name}) before the stage started", file=sys.stderr)
        return 128 + exc.signum
    return main() if status is None else status


if __name__ == "__main__":
    sys.exit(launch())
