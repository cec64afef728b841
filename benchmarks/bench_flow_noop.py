"""No-op time of the two ways to run the pipeline, side by side: ``dvc repro`` and
``unlearn run`` (the Prefect flow) in a workspace where nothing is stale.

Run it in the project after a full ``dvc repro`` (it refuses if a stage is stale):

    python benchmarks/bench_flow_noop.py [--repeats 3] [--project .]

Targets: no-op ``dvc repro`` <= 3 s, no-op ``unlearn run`` <= 10 s. MLflow writes to a
temporary store so that the project's is not touched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"dvc repro": 3.0, "unlearn run": 10.0}


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    if "Running stage" in done.stdout or " ran" in done.stdout:
        sys.exit(f"{' '.join(cmd)} ran stages: the workspace was not up to date; run `dvc repro` first")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--project", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
        commands = {"dvc repro": [str(bin_dir / "dvc"), "repro"], "unlearn run": [str(bin_dir / "unlearn"), "run"]}
        times = {name: [] for name in commands}
        for _ in range(args.repeats):  # interleaved, so that a noisy moment hits both
            for name, cmd in commands.items():
                times[name].append(timed(cmd, args.project, env))
    print("| no-op command | median s | runs (s) | target |")
    print("|---|---:|---|---|")
    for name, runs in times.items():
        median = statistics.median(runs)
        verdict = "ok" if median <= TARGETS[name] else "MISSED"
        print(f"| `{name}` | {median:.2f} | {', '.join(f'{r:.2f}' for r in runs)} | <= {TARGETS[name]:.0f} s: {verdict} |")


if __name__ == "__main__":
    main()
