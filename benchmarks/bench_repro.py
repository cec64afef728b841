"""End-to-end time of the default pipeline (``dvc repro``) from a clean clone.

Clones the project's committed HEAD (``git clone <project> <tmp>/repo``; data/ is
git-ignored and .dvc/cache is not cloned, so no output and no run-cache exists), then
in the clone times:

* ``dvc repro``: the full run of every stage (target <= 300 s);
* ``dvc repro`` again with nothing changed, ``--repeats`` times, median (target <= 3 s);
* ``dvc status`` of the default graph;
* ``unlearn run`` with nothing changed (the Prefect flow), ``--repeats`` times, median
  (target <= 10 s);
* ``dvc exp run -S unlearn.amun.lr=0.02`` (``--set``), a one-parameter change, with the
  time of each stage it re-ran (target <= 60 s).

The stages run with the project's virtualenv first on PATH (so ``python`` is the
venv's), PYTHONPATH set to the clone's code (its ``src/unlearn``, and its ``pipeline/``
through a link named ``unlearn_pipeline``; not the editable install's), and ``MLFLOW_TRACKING_URI=sqlite:///<tmp>/mlflow.db``
so the project's MLflow store is not touched. Stage servers (``unlearn_pipeline.stage_server``)
live in a folder of the run's own, so the full run starts cold, and are stopped at the end;
``--no-server`` sets ``UNLEARN_STAGE_SERVER=0`` (every stage in its own process).

``--rev`` checks out another commit in the clone, to time an older version the same way
(run the two one after the other: the machine is noisy).

Run from anywhere, on idle cores (takes about 7 minutes):

    python benchmarks/bench_repro.py [--repeats 3] [--set unlearn.amun.lr=0.02] [--keep]
                                     [--project /work/main] [--rev COMMIT]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_PROJECT = Path(__file__).resolve().parent.parent
FULL_TARGET_S, NOOP_TARGET_S, FLOW_NOOP_TARGET_S, CHANGE_TARGET_S = 300.0, 3.0, 10.0, 60.0


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, str, list[tuple[str, float]]]:
    """Run ``cmd``, streaming its output; return (wall seconds, output, per-stage seconds).

    A stage's time runs from its ``Running stage '<name>'`` line to the next one (or the
    end), so it includes DVC's own hashing and lock writing around the stage.
    Exits with the output if the command fails.
    """
    start = time.perf_counter()
    lines, marks = [], []
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Running stage"):
                marks.append((line.split("'")[1] if "'" in line else line.strip(), time.perf_counter()))
    seconds = time.perf_counter() - start
    output = "".join(lines)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit code {proc.returncode} in {cwd}:\n{output[-4000:]}")
    ends = [t for _, t in marks[1:]] + [start + seconds]
    return seconds, output, [(name, end - t) for (name, t), end in zip(marks, ends)]


def stage_env(venv_bin: Path, repo: Path, tmp: Path, server: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(venv_bin), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv_bin.parent)
    links = tmp / "import-links"
    links.mkdir(exist_ok=True)
    if not (links / "unlearn_pipeline").exists():
        (links / "unlearn_pipeline").symlink_to(repo / "pipeline", target_is_directory=True)
    env["PYTHONPATH"] = os.pathsep.join([str(links), str(repo / "src")])
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               UNLEARN_STAGE_SERVER_DIR=str(tmp / "stage-servers"), UNLEARN_STAGE_SERVER="1" if server else "0")
    env.pop("UNLEARN_PARENT_RUN_ID", None)
    return env


def bench(project: Path, tmp: Path, repeats: int, rev: str = "HEAD",
          change: str = "unlearn.amun.lr=0.02", server: bool = True) -> list[tuple[str, float, str]]:
    repo = tmp / "repo"
    venv_bin = project / ".venv" / "bin"
    if not (venv_bin / "dvc").exists():
        sys.exit(f"no dvc in {venv_bin}: create the project's virtualenv first")
    dvc = str(venv_bin / "dvc")
    rows: list[tuple[str, float, str]] = []

    seconds, _, _ = run(["git", "clone", "--quiet", str(project), str(repo)], cwd=tmp)
    run(["git", "checkout", "--quiet", rev], cwd=repo)
    commit = run(["git", "rev-parse", "--short", "HEAD"], cwd=repo)[1].strip()
    rows.append((f"git clone ({rev} = {commit})", seconds, ""))
    if (repo / "data" / "prepared").exists() or (repo / ".dvc" / "cache").exists():
        sys.exit("the clone already has outputs or a DVC cache; the full run would not be a full run")

    env = stage_env(venv_bin, repo, tmp, server)
    seconds, log, stages = run([dvc, "repro"], cwd=repo, env=env)
    skipped = [line.split("'")[1] for line in log.splitlines()
               if line.startswith("Stage '") and ("didn't change" in line or "is cached" in line)]
    note = f"; skipped (unchanged or run-cache): {', '.join(skipped)}" if skipped else ""
    verdict = "ok" if seconds <= FULL_TARGET_S else "MISSED"
    rows.append((f"dvc repro, full ({len(stages)} stages ran{note})", seconds, f"<= {FULL_TARGET_S:.0f} s: {verdict}"))
    rows.extend((f"&nbsp;&nbsp;stage {name}", stage_s, "") for name, stage_s in stages)

    noop, reran = [], 0
    for _ in range(repeats):
        seconds, _, stages = run([dvc, "repro"], cwd=repo, env=env)
        noop.append(seconds)
        reran += len(stages)
    median = statistics.median(noop)
    verdict = "ok" if median <= NOOP_TARGET_S else "MISSED"
    runs = ", ".join(f"{s:.2f}" for s in noop)
    rows.append((f"dvc repro, no-op (median of {repeats}: {runs}; {reran} stages re-ran)", median,
                 f"<= {NOOP_TARGET_S:.0f} s: {verdict}"))

    seconds, log, _ = run([dvc, "status", "dvc.yaml"], cwd=repo, env=env)
    clean = "up to date" in log
    rows.append((f"dvc status dvc.yaml ({'up to date' if clean else 'CHANGES: ' + ' '.join(log.split())[:80]})",
                 seconds, ""))

    flow = [run([str(venv_bin / "unlearn"), "run"], cwd=repo, env=env)[0] for _ in range(repeats)]
    median = statistics.median(flow)
    runs = ", ".join(f"{s:.2f}" for s in flow)
    rows.append((f"unlearn run, no-op (median of {repeats}: {runs})", median,
                 f"<= {FLOW_NOOP_TARGET_S:.0f} s: {'ok' if median <= FLOW_NOOP_TARGET_S else 'MISSED'}"))

    seconds, _, stages = run([dvc, "exp", "run", "-S", change], cwd=repo, env=env)
    verdict = "ok" if seconds <= CHANGE_TARGET_S else "MISSED"
    rows.append((f"dvc exp run -S {change} ({len(stages)} stages ran)", seconds,
                 f"<= {CHANGE_TARGET_S:.0f} s: {verdict}"))
    rows.extend((f"&nbsp;&nbsp;stage {name}", stage_s, "") for name, stage_s in stages)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="no-op `dvc repro` runs (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    parser.add_argument("--project", type=Path, default=DEFAULT_PROJECT, help="the project to clone")
    parser.add_argument("--rev", default="HEAD", help="the commit to check out in the clone (default HEAD)")
    parser.add_argument("--no-server", action="store_true", help="run every stage in its own process")
    parser.add_argument("--set", default="unlearn.amun.lr=0.02", help="the one-parameter change to time with "
                        "`dvc exp run -S` (default unlearn.amun.lr=0.02)")
    args = parser.parse_args()

    with scratch_folder("bench-repro-", args.keep) as tmp:
        try:
            rows = bench(args.project.resolve(), tmp, args.repeats, args.rev, args.set, not args.no_server)
        finally:
            if (tmp / "stage-servers").exists():
                from unlearn_pipeline.stage_server import stop_servers

                stop_servers(tmp / "stage-servers")
        print("| what | seconds | target |")
        print("|---|---:|---|")
        for what, seconds, target in rows:
            print(f"| {what} | {seconds:.2f} | {target} |")


@contextlib.contextmanager
def scratch_folder(prefix: str, keep: bool):
    """A temporary folder, removed afterwards unless ``keep`` (then its path is printed)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        if keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
