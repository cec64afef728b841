"""Running independent jobs (reference models, seeds, grid points): in this process, in
a pool of local worker processes, or on a Dask cluster.

A job is a picklable call ``fn(**kwargs)`` of a module-level function that reads its
inputs from files and writes its results to files, returning something small (a path,
a few numbers): so a crashed worker loses only its own job, and the same job runs
anywhere that shares the workspace.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    fn: Callable[..., Any]
    kwargs: dict = field(default_factory=dict)
    name: str = ""


def run_jobs(jobs: list[Job], *, workers: int = 1, retries: int = 0, address: str | None = None) -> list[Any]:
    """Run ``jobs`` and return their results in order.

    With ``address`` (a Dask scheduler, ``tcp://host:8786``) they run on that cluster: see
    :func:`run_on_dask`. Otherwise ``workers == 1`` runs them one after another in this
    process; more starts that many worker processes (spawned, each with
    ``OMP_NUM_THREADS = cores // workers`` so they do not oversubscribe the CPU, at most
    the caller's own ``OMP_NUM_THREADS`` when set: a stage pinned to one thread keeps its
    jobs at one thread, so their results do not depend on the core count). A job
    that raises is retried up to ``retries`` times; the last error is raised once every
    other job has finished.
    """
    if address:
        return run_on_dask(jobs, address, retries=retries)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        start = time.perf_counter()
        results = []
        for done, job in enumerate(jobs, 1):
            results.append(_with_retries(job, retries))
            _log_done(job, done, len(jobs), start)
        return results
    import multiprocessing

    previous = os.environ.get("OMP_NUM_THREADS")
    cap = int(previous) if previous and previous.isdigit() and int(previous) > 0 else os.cpu_count() or 1
    threads = str(max(1, min(cap, (os.cpu_count() or 1) // workers)))
    os.environ["OMP_NUM_THREADS"] = threads  # inherited by the spawned workers
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            start = time.perf_counter()
            futures = {pool.submit(_with_retries, job, retries): i for i, job in enumerate(jobs)}
            results: list[Any] = [None] * len(jobs)
            errors = []
            for done, future in enumerate(as_completed(futures), 1):
                try:
                    results[futures[future]] = future.result()
                except Exception as exc:
                    errors.append(exc)
                _log_done(jobs[futures[future]], done, len(jobs), start)
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    if errors:
        raise errors[0]
    return results


def _log_done(job: Job, done: int, total: int, start: float) -> None:
    """One line per finished job, so a long batch of jobs is never silent."""
    log.info("job %d of %d finished (%s), %.1f s in", done, total, job.name or job.fn.__name__,
             time.perf_counter() - start)


def _with_retries(job: Job, retries: int) -> Any:
    for attempt in range(retries + 1):
        try:
            return job.fn(**job.kwargs)
        except Exception as exc:
            if attempt == retries:
                raise
            log.warning("job %s failed (%s: %s); retry %d of %d", job.name or job.fn.__name__,
                        type(exc).__name__, exc, attempt + 1, retries)


# Environment a job needs to behave as it would in the submitting process.
_FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "UNLEARN_PARENT_RUN_ID")


def run_on_dask(jobs: list[Job], address: str, *, retries: int = 0) -> list[Any]:
    """Run ``jobs`` on the Dask cluster whose scheduler listens at ``address``.

    Each job runs in the submitting process's working directory (the workspace, which a
    cluster must share at the same path) with its MLflow settings. A job that raises is
    retried ``retries`` times; a job whose worker dies is rescheduled on another worker
    by Dask itself. Workers should run one task at a time (``dask worker --nthreads 1``):
    a job changes the worker process's working directory. Dask starts workers with
    ``OMP_NUM_THREADS=1``, so a job computes exactly as in a local pool of 1-thread
    workers; results can differ in the last bits from a run with more threads per job."""
    import uuid

    from dask.distributed import Client

    root = os.getcwd()
    env = {key: os.environ[key] for key in _FORWARDED_ENV if key in os.environ}
    with Client(address, set_as_default=False, timeout=30) as client:
        futures = [client.submit(_in_workspace, job.fn, job.kwargs, root, env, pure=False, retries=retries,
                                 key=f"{job.name or job.fn.__name__}-{uuid.uuid4().hex[:8]}".replace(" ", "_"))
                   for job in jobs]
        return client.gather(futures)


def _in_workspace(fn: Callable[..., Any], kwargs: dict, root: str, env: dict[str, str]) -> Any:
    os.environ.update(env)
    os.chdir(root)
    return fn(**kwargs)
