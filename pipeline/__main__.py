"""``python -m pipeline <stage> [item ...]``: what each dvc.yaml ``cmd`` calls."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from unlearn.errors import UserError


def run_stage(name: str, items: list[str], params_file: str = "params.yaml") -> None:
    """Validate params, then run stage ``name`` inside one MLflow run."""
    from pipeline.stages import STAGES
    from pipeline.tracking import TrackedRun
    from unlearn.config import load_params

    stage = STAGES[name]
    params = load_params(params_file)
    sections = {section: _dump(getattr(params, section)) for section in stage.sections}
    # DVC names the stage it runs in DVC_STAGE (e.g. "evaluate@original"); the flow does too
    addressing = os.environ.get("DVC_STAGE") or " ".join([name, *items])
    with TrackedRun(addressing, sections, tags={"dvc.stage": addressing}) as run:
        stage.fn(params, run, *items)


def _dump(value):
    return value.model_dump() if hasattr(value, "model_dump") else value


def main(argv: list[str] | None = None) -> int:
    from pipeline.stages import STAGES

    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Run one pipeline stage.")
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("items", nargs="*", help="the foreach item(s), e.g. a model name for evaluate")
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_stage(args.stage, args.items, args.params)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
