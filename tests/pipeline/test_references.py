import numpy as np

from unlearn.evaluation.suite import keep_matrix


def test_keep_matrix_puts_every_sample_in_half_of_the_models_at_random():
    keep = keep_matrix(8, 500, seed=0)
    assert keep.shape == (8, 500) and keep.dtype == bool
    assert (keep.sum(0) == 4).all()
    assert abs(keep.sum(1).mean() - 250) < 1e-9 and keep.sum(1).std() > 0  # each model about half
    assert np.array_equal(keep, keep_matrix(8, 500, seed=0)) and not np.array_equal(keep, keep_matrix(8, 500, seed=1))
    assert (keep_matrix(5, 100, seed=0).sum(0) == 2).all()


def test_references_on_a_dask_cluster_equal_the_local_run_and_run_in_the_workers(project):
    import hashlib
    import os
    import subprocess
    import sys

    from dask.distributed import LocalCluster

    from tests.conftest import mlflow_runs, write_params

    def stage(*args):
        done = subprocess.run([sys.executable, "-m", "unlearn_pipeline", *args], cwd=project, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    def logits() -> dict[str, str]:
        folder = project / "data" / "references"
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("logits_*.pt"))}

    stage("prepare")
    write_params(project, {"execution": {"workers": 2}})  # 1-thread workers, as Dask's
    stage("references")
    local = logits()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        write_params(project, {"execution": {"address": cluster.scheduler_address}})
        stage("references")
        workers = {f"{os.uname().nodename}:{w.pid}" for w in cluster.workers.values() if hasattr(w, "pid")}
    assert len(local) == 4 and logits() == local
    jobs = [r for r in mlflow_runs(project) if r.data.tags.get("unlearn.job") == "references"]
    stage_runs = {r.info.run_id: r for r in mlflow_runs(project) if r.data.tags.get("dvc.stage") == "references"}
    on_cluster = [r for r in jobs if stage_runs[r.data.tags["mlflow.parentRunId"]].info.start_time ==
                  max(s.info.start_time for s in stage_runs.values())]
    assert len(on_cluster) == 4
    processes = {r.data.tags["unlearn.process"] for r in on_cluster}
    assert processes <= workers and len(processes) >= 1
