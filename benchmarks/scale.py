"""Scale-out: the reference-model stage (K tiny models) with 1 local worker, 2 local
workers and a 2-worker Dask cluster on this machine, and the scheduling overhead per job.

Each setting runs the real stage (``python -m unlearn_pipeline references``) in a scratch
workspace prepared once (digits, small_cnn, ``--width``); wall time includes the stage's
fixed cost (interpreter, imports, MLflow), the same in every row. The overhead row runs
K no-op jobs through each executor. The Dask cluster is a ``LocalCluster`` (scheduler
and 2 worker processes, 1 thread each, on 127.0.0.1) started by this script.

    python benchmarks/scale.py --K 8 --epochs 10
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from unlearn.execution import Job, run_jobs


def stage(workspace: Path, name: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "unlearn_pipeline", name], cwd=workspace, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{name} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def set_execution(workspace: Path, **execution) -> None:
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["execution"] = {**params["execution"], **execution}
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def noop_overhead(jobs: int, **executor) -> float:
    """Seconds per job of running ``jobs`` jobs that do nothing."""
    start = time.perf_counter()
    run_jobs([Job(os.getpid, name=f"noop {i}") for i in range(jobs)], **executor)
    return (time.perf_counter() - start) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--K", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=8, help="small_cnn width")
    args = parser.parse_args()
    from dask.distributed import LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp)
        params = yaml.safe_load(Path("params.yaml").read_text())
        params["model"]["width"] = args.width
        params["references"] = {"K": args.K, "epochs": args.epochs}
        (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workspace / 'mlflow.db'}"
        stage(workspace, "prepare")
        rows = []
        for label, execution in (("1 local worker (in-process)", {"workers": 1, "address": None}),
                                 ("2 local worker processes", {"workers": 2, "address": None})):
            set_execution(workspace, **execution)
            rows.append((label, stage(workspace, "references"), noop_overhead(args.K, workers=execution["workers"])))
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster:
            set_execution(workspace, workers=1, address=cluster.scheduler_address)
            rows.append(("Dask cluster, 2 workers x 1 thread", stage(workspace, "references"),
                         noop_overhead(args.K, address=cluster.scheduler_address)))
    base = rows[0][1]
    print(f"\nreferences stage: K = {args.K} small_cnn (width {args.width}) models, {args.epochs} epochs on digits; "
          f"{os.cpu_count()} cores\n")
    print("| executor | stage wall time (s) | speed-up | overhead per no-op job (ms) |")
    print("|---|---:|---:|---:|")
    for label, seconds, overhead in rows:
        print(f"| {label} | {seconds:.1f} | {base / seconds:.2f}x | {1000 * overhead:.1f} |")


if __name__ == "__main__":
    main()
