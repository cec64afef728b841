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


def pid_after(seconds: float, started: str) -> int:
    """Writes its pid to ``started``, sleeps, returns the pid (a job long enough to be killed)."""
    import time

    with open(started, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()


@pytest.fixture(scope="module")
def cluster():
    """A real Dask cluster on loopback: a scheduler and 2 worker processes, one thread each."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local:
        yield local


def test_dask_runs_the_jobs_in_worker_processes_with_the_same_results(cluster):
    jobs = [Job(square_and_pid, {"x": x}, name=f"square {x}") for x in range(6)]
    results = run_jobs(jobs, address=cluster.scheduler_address)
    assert [r for r, _ in results] == [x * x for x in range(6)]
    assert os.getpid() not in {pid for _, pid in results}


def test_dask_retries_a_failing_job_and_reruns_the_job_of_a_killed_worker(cluster, tmp_path):
    import signal
    import threading
    import time

    assert run_jobs([Job(fail_first, {"marker": str(tmp_path / "a")})], retries=1,
                    address=cluster.scheduler_address) == ["ok"]

    started = tmp_path / "started"

    def kill_first_runner() -> None:
        while not started.exists() or not started.read_text().strip():
            time.sleep(0.05)
        os.kill(int(started.read_text().split()[0]), signal.SIGKILL)

    killer = threading.Thread(target=kill_first_runner)
    killer.start()
    [pid] = run_jobs([Job(pid_after, {"seconds": 2.0, "started": str(started)})], address=cluster.scheduler_address)
    killer.join()
    runners = [int(line) for line in started.read_text().split()]
    assert len(runners) == 2 and pid == runners[1] != runners[0]  # killed mid-job, completed by another worker


@pytest.mark.parametrize("workers", [1, 2])
def test_every_finished_job_logs_a_line(workers, caplog):
    caplog.set_level("INFO", logger="unlearn.execution")
    run_jobs([Job(square_and_pid, {"x": x}, name=f"square {x}") for x in range(3)], workers=workers)
    lines = [r.getMessage() for r in caplog.records if r.name == "unlearn.execution"]
    assert [line.split(" (")[0] for line in lines] == [f"job {k} of 3 finished" for k in (1, 2, 3)]
    assert {line.split("(")[1].split(")")[0] for line in lines} == {"square 0", "square 1", "square 2"}
