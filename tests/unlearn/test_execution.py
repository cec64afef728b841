import os

import pytest

from unlearn.execution import Job, run_jobs


def square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def fail_first(marker: str) -> str:
    """Fails the first time it runs for ``marker`` (a file path), succeeds after."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return "ok"


def test_local_and_process_pool_give_the_same_results_in_order():
    jobs = [Job(square_and_pid, {"x": x}) for x in range(6)]
    local = run_jobs(jobs)
    pooled = run_jobs(jobs, workers=2)
    assert [r for r, _ in local] == [r for r, _ in pooled] == [x * x for x in range(6)]
    assert {pid for _, pid in local} == {os.getpid()}
    assert os.getpid() not in {pid for _, pid in pooled}


def test_failed_jobs_are_retried_and_raise_when_retries_run_out(tmp_path):
    assert run_jobs([Job(fail_first, {"marker": str(tmp_path / "a")})], retries=1) == ["ok"]
    with pytest.raises(RuntimeError, match="first attempt fails"):
        run_jobs([Job(fail_first, {"marker": str(tmp_path / "b")})], retries=0)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        run_jobs([], workers=0)
