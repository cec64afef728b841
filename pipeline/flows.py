"""The Prefect flow that runs the DVC graph.

Stage order comes from DVC itself (``Repo.index.graph``; dvc.yaml stays the only copy
of the graph). Each stage is one Prefect task, started once its upstream stages
are done, with up to ``flow.concurrency`` stages at once and ``flow.retries``
retries. One ``dvc status`` of the whole graph first says which stages are stale
(nothing stale: no flow starts); a task then does what ``dvc repro --single-item``
does: run the stage's own ``cmd`` if it is stale (asking DVC again once an upstream
stage has run), and record the result with ``dvc commit``. ``dvc repro`` holds a repository-wide
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
import queue
import subprocess
import sys
import threading
import uuid
from collections import deque
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner

from unlearn.errors import ConfigError
from unlearn_pipeline.graph import StageNode, dvc_stages, run_dvc, stale_stages
from unlearn_pipeline.tracking import EXECUTION_ENV, PARENT_RUN_ENV, TrackedRun

log = logging.getLogger(__name__)
_DVC_LOCK = threading.Lock()  # one DVC command at a time from this process


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    with _DVC_LOCK:
        return run_dvc(root, *args)


def _still_stale(root: Path, address: str) -> bool:
    with _DVC_LOCK:  # not while another task's `dvc commit` holds DVC's lock
        return bool(stale_stages(root, [address]))


def _run_command(root: Path, cmd: str, env: dict[str, str], name: str) -> None:
    """Run ``cmd``; each line of its output goes to the flow's log prefixed with the stage ``name``
    (stages run side by side, so unprefixed lines could not be told apart)."""
    logger = get_run_logger()
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(cmd, shell=True, cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            tail.append(line.rstrip())
            logger.info("[%s] %s", name, line.rstrip())
    if proc.returncode != 0:
        raise RuntimeError(f"`{cmd}` exited with {proc.returncode}:\n" + "\n".join(tail))


@task
def reproduce_stage(root: str, node: StageNode, env: dict[str, str], stale: bool, upstream: list[str]) -> str:
    """Reproduce one DVC stage if it is stale; return "ran" or "cached". ``stale`` is the flow's
    first ``dvc status``; once an upstream stage has run, DVC is asked again for this one."""
    root_path = Path(root)
    if not stale and ("ran" not in upstream or not _still_stale(root_path, node.address)):
        get_run_logger().info("%s: up to date (DVC cache)", node.address)
        return "cached"
    _run_command(root_path, node.cmd, {**env, "DVC_STAGE": node.address}, node.address)
    done = _dvc(root_path, "commit", "--force", node.address)
    if done.returncode != 0:
        raise RuntimeError(f"dvc commit {node.address} failed: {done.stderr.strip()}")
    return "ran"


@flow(name="unlearn-pipeline", log_prints=True)
def pipeline_flow(nodes: list[StageNode], stale: set[str], root: str = ".", retries: int = 1,
                  retry_delay_s: float = 2.0, concurrency: int = 1) -> dict[str, str]:
    """Run ``nodes`` (from :func:`dvc_stages`) under ``root`` stage by stage; returns
    {stage: "ran" | "cached"}.

    Each stage process gets ``cpu_count // concurrency`` threads (``OMP_NUM_THREADS``,
    unless set): PyTorch processes that together ask for more threads than there are
    cores slow down many times over. Every stage's MLflow run is nested under the flow's
    run and tagged with its execution id (``unlearn.execution``).
    """
    stage_task = reproduce_stage.with_options(retries=retries, retry_delay_seconds=retry_delay_s)
    execution = f"flow-{uuid.uuid4().hex[:12]}"
    with TrackedRun("flow", {"flow": {"stages": len(nodes), "retries": retries}},
                    tags={"unlearn.flow": "true", "unlearn.execution": execution}) as parent:
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // concurrency)))
        env[EXECUTION_ENV] = execution
        if parent.run_id:
            env[PARENT_RUN_ENV] = parent.run_id
        futures = _submit_when_ready(nodes, lambda node, upstream: stage_task.with_options(
            task_run_name=node.address).submit(root, node, env, node.address in stale, upstream))
        return {address: future.result() for address, future in futures.items()}


def _submit_when_ready(nodes: list[StageNode], submit) -> dict:
    """Submit each node once all its upstream tasks have finished; returns {address: future}.
    A task submitted earlier would hold one of the runner's ``concurrency`` threads while it
    waits, and could keep an independent stage that is ready from starting."""
    finished: queue.Queue[str] = queue.Queue()
    futures: dict = {}
    waiting = list(nodes)
    done: set[str] = set()
    while len(done) < len(nodes):
        for node in [n for n in waiting if all(u in done for u in n.upstream)]:
            waiting.remove(node)
            futures[node.address] = submit(node, [futures[u] for u in node.upstream])
            futures[node.address].add_done_callback(lambda _, address=node.address: finished.put(address))
        done.add(finished.get())
    return futures


def _dask_runner(address: str):
    """Prefect's task runner for the Dask cluster at ``address`` (the ``dask`` extra)."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(f"params.yaml: execution.address = {address}: running the flow on Dask needs "
                          f"prefect-dask; pip install -e '.[dask]'") from None
    return DaskTaskRunner(address=address)


def run(root: str | Path = ".", targets: list[str] | None = None) -> dict[str, str]:
    """Validate params.yaml, then run the stale part of the graph with :func:`pipeline_flow`
    and its ``flow`` settings, its stage tasks on the Dask cluster of ``execution.address``
    when set (the workspace must then be shared at the same path), else in local threads.
    When ``dvc status`` finds nothing stale, no flow starts (nor a Prefect server)."""
    from unlearn.config import load_params

    params = load_params(Path(root) / "params.yaml")
    nodes = dvc_stages(Path(root), targets)
    stale = stale_stages(Path(root), [node.address for node in nodes])
    if not stale:
        return {node.address: "cached" for node in nodes}
    settings = params.flow
    address = params.execution.address
    runner = _dask_runner(address) if address else ThreadPoolTaskRunner(max_workers=settings.concurrency)
    configured = pipeline_flow.with_options(task_runner=runner)
    return configured(nodes, stale, root=str(Path(root).resolve()), retries=settings.retries,
                      retry_delay_s=settings.retry_delay_s, concurrency=settings.concurrency)
