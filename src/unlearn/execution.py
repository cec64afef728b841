"""Running independent jobs (reference models, seeds, grid points): in this process or in
a pool of local worker processes.

A job is a picklable call ``fn(**kwargs)`` of a module-level function that reads its
inputs from files and writes its results to files, returning something small (a path,
a few numbers): so a crashed worker loses only its own job, and the same job runs
anywhere that shares the workspace.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    fn: Callable[..., Any]
    kwargs: dict = field(default_factory=dict)
    name: str = ""


def run_jobs(jobs: list[Job], *, workers: int = 1, retries: int = 0) -> list[Any]:
    """Run ``jobs`` and return their results in order.

    ``workers == 1`` runs them one after another in this process; more starts that many
    worker processes (spawned, each with ``OMP_NUM_THREADS = cores // workers`` so they do
    not oversubscribe the CPU). A job that raises is retried up to ``retries`` times; the
    last error is raised once every other job has finished.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        return [_with_retries(job, retries) for job in jobs]
    import multiprocessing

    threads = str(max(1, (os.cpu_count() or 1) // workers))
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = threads  # inherited by the spawned workers
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_with_retries, job, retries): i for i, job in enumerate(jobs)}
            results: list[Any] = [None] * len(jobs)
            errors = []
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                except Exception as exc:
                    errors.append(exc)
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    if errors:
        raise errors[0]
    return results


def _with_retries(job: Job, retries: int) -> Any:
    for attempt in range(retries + 1):
        try:
            return job.fn(**job.kwargs)
        except Exception as exc:
            if attempt == retries:
                raise
            log.warning("job %s failed (%s: %s); retry %d of %d", job.name or job.fn.__name__,
                        type(exc).__name__, exc, attempt + 1, retries)
