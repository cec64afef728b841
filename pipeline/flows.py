"""The Prefect flow that runs the DVC graph.

Stage order comes from DVC itself (``Repo.index.graph``; dvc.yaml stays the only copy
of the graph). Each stage is one Prefect task, started once its upstream stages
are done, with up to ``flow.concurrency`` stages at once and ``flow.retries``
retries. A task does what ``dvc repro --single-item`` does, in three steps:
ask DVC whether the stage is stale (``dvc status``), run the stage's own ``cmd``,
and record the result with ``dvc commit``. ``dvc repro`` holds a repository-wide
lock for as long as a stage runs, which would serialise the stages; the two DVC
steps here hold it only briefly, so independent stages overlap. DVC still decides
what is up to date and stores every output in its cache and in dvc.lock.

Without ``PREFECT_API_URL``, Prefect starts a temporary local server for the run;
with it, the runs show in that server's UI. Stage runs in MLflow are nested under
one parent run per flow execution.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.tracking import PARENT_RUN_ENV, TrackedRun
from unlearn.errors import ConfigError

log = logging.getLogger(__name__)
_DVC_LOCK = threading.Lock()  # one DVC command at a time from this process


@dataclass(frozen=True)
class StageNode:
    address: str  # e.g. "train" or "evaluate@original"
    cmd: str
    upstream: tuple[str, ...]


def dvc_stages(root: Path, targets: list[str] | None = None) -> list[StageNode]:
    """The pipeline stages in a topological order, with their commands and upstream
    stages, read from DVC's own graph. ``targets`` limits it to those stages and
    everything they depend on."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edge: stage -> a stage it depends on
        nodes = {stage.addressing: stage for stage in graph.nodes if getattr(stage, "cmd", None)}
        if targets:
            unknown = [t for t in targets if t not in nodes]
            if unknown:
                raise ValueError(f"unknown stage {unknown[0]!r}; stages: {', '.join(sorted(nodes))}")
            wanted = set()
            for target in targets:
                wanted |= {s.addressing for s in nx.dfs_postorder_nodes(graph, nodes[target])}
        else:
            wanted = set(nodes)
        order = [s for s in reversed(list(nx.topological_sort(graph))) if s.addressing in wanted and s.addressing in nodes]
        cmd = lambda stage: stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd)
        return [StageNode(s.addressing, cmd(s), tuple(sorted(u.addressing for u in graph.successors(s)
                                                             if u.addressing in nodes)))
                for s in order]


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    dvc = Path(sys.executable).with_name("dvc")
    command = [str(dvc) if dvc.exists() else "dvc", *args]
    with _DVC_LOCK:
        return subprocess.run(command, cwd=root, capture_output=True, text=True)


def _is_stale(root: Path, address: str) -> bool:
    done = _dvc(root, "status", "--json", address)
    if done.returncode != 0:
        raise RuntimeError(f"dvc status {address} failed: {done.stderr.strip()}")
    return done.stdout.strip() not in ("", "{}")


def _run_command(root: Path, cmd: str, env: dict[str, str]) -> None:
    logger = get_run_logger()
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(cmd, shell=True, cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            tail.append(line.rstrip())
            logger.info(line.rstrip())
    if proc.returncode != 0:
        raise RuntimeError(f"`{cmd}` exited with {proc.returncode}:\n" + "\n".join(tail))


@task
def reproduce_stage(root: str, node: StageNode, parent_run_id: str | None, threads_per_stage: int = 1) -> str:
    """Reproduce one DVC stage if DVC says it is stale; return "ran" or "cached"."""
    root_path = Path(root)
    if not _is_stale(root_path, node.address):
        get_run_logger().info("%s: up to date (DVC cache)", node.address)
        return "cached"
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_STAGE"] = node.address
    env.setdefault("OMP_NUM_THREADS", str(threads_per_stage))  # concurrent stages must not oversubscribe the cores
    if parent_run_id:
        env[PARENT_RUN_ENV] = parent_run_id
    _run_command(root_path, node.cmd, env)
    done = _dvc(root_path, "commit", "--force", node.address)
    if done.returncode != 0:
        raise RuntimeError(f"dvc commit {node.address} failed: {done.stderr.strip()}")
    return "ran"


@flow(name="unlearn-pipeline", log_prints=True)
def pipeline_flow(root: str = ".", targets: list[str] | None = None, retries: int = 1,
                  retry_delay_s: float = 2.0, concurrency: int = 1) -> dict[str, str]:
    """Run the DVC pipeline under ``root`` stage by stage; returns {stage: "ran" | "cached"}.

    Each stage process gets ``cpu_count // concurrency`` threads (``OMP_NUM_THREADS``,
    unless set): PyTorch processes that together ask for more threads than there are
    cores slow down many times over.
    """
    nodes = dvc_stages(Path(root), targets)
    threads_per_stage = max(1, (os.cpu_count() or 1) // concurrency)
    stage_task = reproduce_stage.with_options(retries=retries, retry_delay_seconds=retry_delay_s)
    with TrackedRun("flow", {"flow": {"targets": ",".join(targets or []), "retries": retries}},
                    tags={"unlearn.flow": "true"}) as parent:
        futures = {}
        for node in nodes:
            upstream = [futures[name] for name in node.upstream]
            futures[node.address] = stage_task.with_options(task_run_name=node.address).submit(
                root, node, parent.run_id, threads_per_stage, wait_for=upstream)
        return {address: future.result() for address, future in futures.items()}


def _dask_runner(address: str):
    """Prefect's task runner for the Dask cluster at ``address`` (the ``dask`` extra)."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(f"params.yaml: execution.address = {address}: running the flow on Dask needs "
                          f"prefect-dask; pip install -e '.[dask]'") from None
    return DaskTaskRunner(address=address)


def run(root: str | Path = ".", targets: list[str] | None = None) -> dict[str, str]:
    """Validate params.yaml, then run :func:`pipeline_flow` with its ``flow`` settings, its
    stage tasks on the Dask cluster of ``execution.address`` when set (the workspace
    must then be shared at the same path), else in local threads."""
    from unlearn.config import load_params

    params = load_params(Path(root) / "params.yaml")
    settings = params.flow
    address = params.execution.address
    runner = _dask_runner(address) if address else ThreadPoolTaskRunner(max_workers=settings.concurrency)
    configured = pipeline_flow.with_options(task_runner=runner)
    return configured(root=str(Path(root).resolve()), targets=targets, retries=settings.retries,
                      retry_delay_s=settings.retry_delay_s, concurrency=settings.concurrency)


if __name__ == "__main__":
    from pipeline.cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
