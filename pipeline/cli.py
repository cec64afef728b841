"""The ``unlearn`` command: ``unlearn run`` (the Prefect flow), ``unlearn stage``, ``unlearn doctor``,
``unlearn preset`` and ``unlearn sync-mlflow``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from unlearn.errors import UserError

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


def _failure(exc: Exception) -> str:
    """One line on why the flow failed, and what to do when it is Prefect's temporary server."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "ephemeral Prefect API server" in first:
        return (f"Prefect's temporary server did not start within {os.environ.get(STARTUP_TIMEOUT_ENV)} s (a busy "
                f"machine?). Start one yourself, `prefect server start --host 127.0.0.1`, and set "
                f"PREFECT_API_URL=http://127.0.0.1:4200/api; or allow a longer start with {STARTUP_TIMEOUT_ENV}")
    return f"the pipeline failed: {first}"


def _presets_epilog() -> str:
    from unlearn_pipeline.presets import describe

    try:
        return describe()
    except Exception as exc:  # a help text must not fail: e.g. a params.yaml the presets cannot be applied to
        return f"presets: cannot list them here ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unlearn", description="Reliable machine unlearning pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the DVC pipeline as a Prefect flow (stale stages only)")
    run.add_argument("targets", nargs="*", help="stages to reproduce with their upstream (default: all)")
    stage = sub.add_parser("stage", help="run one stage directly (what dvc.yaml's cmd calls)")
    stage.add_argument("stage_args", nargs=argparse.REMAINDER)
    sub.add_parser("doctor", help="environment, params, dataset, prepared data and DVC sync status")
    sub.add_parser("sync-mlflow", help="log the runs a tracking fault left in .unlearn/mlflow-pending")
    words = argv if argv is not None else sys.argv[1:]
    wants_presets = "preset" in words and ("-h" in words or "--help" in words)  # the list costs a params check
    preset = sub.add_parser("preset", help="apply presets/NAME.yaml to params.yaml, keeping its comments",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog=_presets_epilog() if wants_presets else None)
    preset.add_argument("name", help="a file name under presets/ without .yaml (e.g. paper-cifar10-fast)")
    preset.add_argument("--cost", action="store_true",
                        help="print what the preset costs (epoch-equivalents and minutes) instead of applying it")
    preset.add_argument("--s-per-epoch", type=float, default=3.0,
                        help="with --cost: seconds per 50,000-image epoch (benchmarks/gpu_check.py measures it)")
    preset.add_argument("--cpu-s-per-model", type=float, default=7.0,
                        help="with --cost: CPU seconds of the attacks per model "
                             "(benchmarks/evaluate_cifar.py: 6.6 on 2 cores)")
    args = parser.parse_args(argv)

    if args.command == "preset":
        from unlearn_pipeline.presets import cost as preset_cost
        from unlearn_pipeline.presets import main as preset_main

        try:
            if args.cost:
                return preset_cost(args.name, args.s_per_epoch, args.cpu_s_per_model)
            return preset_main(args.name)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    if args.command == "sync-mlflow":
        from unlearn_pipeline.mlflow_sync import main as sync_main

        return sync_main()
    if args.command == "doctor":
        from unlearn_pipeline.doctor import doctor

        return doctor()
    if args.command == "stage":
        from unlearn_pipeline.__main__ import main as stage_main

        return stage_main(args.stage_args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Prefect's temporary server gets 20 s to start by default: too little on a busy 2-core machine
    os.environ.setdefault(STARTUP_TIMEOUT_ENV, "120")
    from unlearn_pipeline.flows import run as run_flow

    try:
        results = run_flow(".", args.targets or None)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"error: {_failure(exc)}", file=sys.stderr)
        return 1
    for address, outcome in results.items():
        print(f"{address:24s} {outcome}")
    return 0
