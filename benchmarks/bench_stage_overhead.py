"""The fixed cost of a pipeline stage: module import times and a near-empty stage.

For each module, the wall time of a fresh ``python -c "import X"`` subprocess minus
that of ``python -c pass`` (interpreter start-up); the measurements are interleaved
(one round imports every module once, in turn) and the median over the rounds is
reported. Two fixed costs of the stages that train and log a model are timed the same way,
net of their imports, beside what the project does instead: the first step of
``torch.optim.SGD`` (its methods import ``torch._dynamo``) against :class:`unlearn.optim.SGD`,
and MLflow's check of a model's pip requirements against the installed packages (skipped by
``unlearn_pipeline.tracking`` while logging). Then the wall time of the whole ``prepare`` stage on the embedded digits
(``python -m unlearn_pipeline prepare``), which does almost no work: it decodes 1,797
8x8 images and writes the splits; interleaved: run by a warm stage server (the default,
``unlearn_pipeline.stage_server``; the server lives in the temporary folder and is warmed by two
untimed runs), and in its own process (``UNLEARN_STAGE_SERVER=0``) with MLflow logged by its
companion process or from the stage's process (``UNLEARN_MLFLOW_COMPANION=0``). It runs in a temporary folder holding a copy of
params.yaml (the installed ``unlearn`` and ``unlearn_pipeline``), against a throw-away MLflow
store (``MLFLOW_TRACKING_URI=sqlite:///<tmp>/mlflow.db``), so nothing in the project
is touched; one untimed run creates that store first.

Run from anywhere with the project's virtualenv active:

    python benchmarks/bench_stage_overhead.py [--repeats 3] [--project /work/main]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULES = (
    "torch", "torchvision", "mlflow", "sklearn", "prefect", "dvc.repo",
    "unlearn.config", "unlearn_pipeline.stages", "unlearn_pipeline.__main__", "unlearn_pipeline.tracking",
)
DEFAULT_PROJECT = Path(__file__).resolve().parent.parent
_STEP = "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3); o = {}; o.step()"
FIXED_COSTS = {  # name: (import, import and the work), timed in turn
    "first torch.optim.SGD step": ("import torch", "import torch\n" + _STEP.format("torch.optim.SGD([p], lr=0.1)")),
    "first unlearn.optim.SGD step": ("import torch, unlearn.optim",
                                     "import torch, unlearn.optim\n" + _STEP.format("unlearn.optim.SGD([p], lr=0.1)")),
    "MLflow's requirement check (skipped)": (
        "import mlflow.utils.requirements_utils",
        "import mlflow.utils.requirements_utils as r\nr.warn_dependency_requirement_mismatches(['torch', 'mlflow'])"),
}


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds of wall time of ``cmd``; raise with its stderr if it fails."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def make_env(tmp: Path) -> dict[str, str]:
    # The caller's environment as is (as a DVC stage would inherit it); with
    # PYTHONDONTWRITEBYTECODE set, the project's own modules are compiled on each import.
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    env["UNLEARN_STAGE_SERVER_DIR"] = str(tmp / "stage-servers")
    return env


def import_times(repeats: int, cwd: Path, env: dict[str, str]) -> dict[str, list[float]]:
    python = sys.executable
    commands = {"(python -c pass)": [python, "-c", "pass"]}
    commands.update({m: [python, "-c", f"import {m}"] for m in MODULES})
    for name, (imports, work) in FIXED_COSTS.items():
        commands[f"{name} (imports)"] = [python, "-c", imports]
        commands[name] = [python, "-c", work]
    for cmd in commands.values():  # warm-up: fill the OS file cache and __pycache__
        timed(cmd, cwd, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            times[name].append(timed(cmd, cwd, env))
    return times


def stage_times(repeats: int, project: Path, work: Path, env: dict[str, str]) -> dict[str, list[float]]:
    """The ``prepare`` stage's wall times, interleaved: served by a warm stage server, and in
    its own process with MLflow logged by its companion or by itself."""
    shutil.copy2(project / "params.yaml", work / "params.yaml")
    cmd = [sys.executable, "-m", "unlearn_pipeline", "prepare"]
    own = {**env, "UNLEARN_STAGE_SERVER": "0"}
    timed(cmd, work, own)  # creates the MLflow store (schema migrations), untimed
    if not (work / "data" / "prepared" / "meta.json").is_file():
        raise RuntimeError("the prepare stage did not write data/prepared/meta.json")
    for _ in range(2):  # the first starts the server; the second waits for its imports
        timed(cmd, work, env)
        time.sleep(10)
    envs = {"a warm stage server's process": env, "its own process, through the MLflow companion": own,
            "its own process, by itself": {**own, "UNLEARN_MLFLOW_COMPANION": "0"}}
    times: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(repeats):
        for name, stage_env in envs.items():
            times[name].append(timed(cmd, work, stage_env))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each command (default 3)")
    parser.add_argument("--project", type=Path, default=DEFAULT_PROJECT, help="the project root")
    args = parser.parse_args()
    project = args.project.resolve()

    with tempfile.TemporaryDirectory(prefix="bench-stage-") as tmp_name:
        tmp = Path(tmp_name)
        work = tmp / "work"
        work.mkdir()
        env = make_env(tmp)
        imports = import_times(args.repeats, work, env)
        try:
            stage = stage_times(args.repeats, project, work, env)
        finally:
            from unlearn_pipeline.stage_server import stop_servers

            stop_servers(tmp / "stage-servers")

    base = statistics.median(imports.pop("(python -c pass)"))
    print(f"python {sys.version.split()[0]}, median of {args.repeats} runs, "
          f"imports net of interpreter start-up\n")
    print("| what | seconds |")
    print("|---|---:|")
    print(f"| python -c pass (interpreter start-up) | {base:.3f} |")
    for module in MODULES:
        print(f"| import {module} | {statistics.median(imports[module]) - base:.3f} |")
    for name in FIXED_COSTS:
        work = statistics.median(imports[name]) - statistics.median(imports[f"{name} (imports)"])
        print(f"| {name}, net of its imports | {work:.3f} |")
    for name, seconds in stage.items():
        print(f"| stage: python -m unlearn_pipeline prepare on digits (whole), in {name} | "
              f"{statistics.median(seconds):.3f} |")


if __name__ == "__main__":
    main()
