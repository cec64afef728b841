"""The Prefect flow on a real (temporary, shared) Prefect server."""

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from unlearn_pipeline.flows import _submit_when_ready, dvc_stages, run
from unlearn_pipeline.graph import StageNode
from tests.conftest import CLASS_METHODS, METHODS, mlflow_runs, write_params

pytestmark = pytest.mark.slow


def test_stage_order_comes_from_dvc(project):
    nodes = dvc_stages(project)
    order = [n.address for n in nodes]
    assert order[:2] == ["code", "prepare"]
    assert order.index("evaluate") > max(order.index("unlearn@amun"), order.index("retrain"))
    by_name = {n.address: n for n in nodes}
    assert by_name["evaluate"].upstream == ("code", "prepare", "references", "requests", "requests_retrain", "retrain", "train",
                                            "ulira_shadows", *(f"unlearn@{m}" for m in sorted(METHODS)))
    assert by_name["evaluate"].cmd == "python -m unlearn_pipeline evaluate"
    assert by_name["unlearn@amun"].upstream == ("adversarial", "code", "prepare", "train", "ulira_shadows")
    assert [n.address for n in dvc_stages(project, ["train"])] == ["code", "prepare", "import_model", "train"]
    assert by_name["evaluate_class"].upstream == ("code", "prepare", "references", "retrain_class", "train", "ulira_shadows",
                                                  *(f"unlearn_class@{m}" for m in sorted(CLASS_METHODS)))


def test_a_waiting_stage_never_holds_a_worker_an_independent_ready_stage_needs():
    # topological order a, b, c, d on two workers: c (after b) submitted before d would wait on a
    # worker while b runs, and d could not start until b ended
    nodes = [StageNode("a", "", ()), StageNode("b", "", ("a",)), StageNode("c", "", ("b",)),
             StageNode("d", "", ("a",))]
    d_started = threading.Event()

    def body(address):
        if address == "d":
            d_started.set()
        return address != "b" or d_started.wait(timeout=10)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = _submit_when_ready(nodes, lambda node, upstream: pool.submit(body, node.address))
        assert {address: f.result() for address, f in futures.items()} == dict.fromkeys("abcd", True)


TARGETS = ["retrain", "adversarial"]  # a sub-graph where two branches can overlap after prepare
TARGET_STAGES = {"code", "prepare", "import_model", "train", "ulira_shadows", *TARGETS}  # adversarial: the shadows' D_A too


def test_flow_runs_the_graph_concurrently_and_then_hits_the_cache(project, prefect_server):
    results = run(project, TARGETS)
    assert set(results.values()) == {"ran"} and set(results) == TARGET_STAGES
    status = subprocess.run(["dvc", "status", "--with-deps", "--json", *TARGETS], cwd=project, capture_output=True,
                            text=True)
    assert status.returncode == 0 and status.stdout.strip() == "{}"

    runs = mlflow_runs(project)
    parents = [r for r in runs if r.data.tags.get("unlearn.flow") == "true"]
    assert len(parents) == 1
    stages = {r.data.tags["dvc.stage"]: r for r in runs if "dvc.stage" in r.data.tags}
    assert set(stages) == TARGET_STAGES - {"code"}  # hashing the code makes no MLflow run
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in stages.values())
    spans = sorted((r.info.start_time, r.info.end_time) for r in stages.values())
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))  # two stages overlapped

    assert len({r.data.tags["unlearn.execution"] for r in [*parents, *stages.values()]}) == 1

    again = run(project, TARGETS)
    assert again == {stage: "cached" for stage in again} and set(again) == TARGET_STAGES
    assert len(mlflow_runs(project)) == len(runs)  # nothing stale: no flow started


def test_flow_runs_its_stage_tasks_on_a_dask_cluster(project, prefect_server):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        write_params(project, {"execution": {"address": cluster.scheduler_address}})
        assert run(project, ["prepare"]) == {"code": "ran", "prepare": "ran"}
        stage_tasks = cluster.scheduler.task_prefixes["reproduce_stage"]
        assert stage_tasks.all_durations["compute"] > 0  # the stage task computed on a worker
    assert (project / "data" / "prepared" / "meta.json").exists()


def test_a_temporary_server_that_starts_too_slowly_gets_one_line_saying_what_to_do(project, monkeypatch):
    """`unlearn run` on a busy machine: Prefect's temporary server is given a longer start, and
    when even that is too short (here 0 s: a start that is always too slow) the user is told
    how to run a server or allow more time, in one line, with exit status 1."""
    import os

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0"}
    done = subprocess.run(["unlearn", "run", "prepare"], cwd=project, capture_output=True, text=True, env=env,
                          timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-2000:]
    assert "did not start within 0 s" in lines[0] and "prefect server start --host 127.0.0.1" in lines[0]
    assert "PREFECT_API_URL" in lines[0] and "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in lines[0]
    assert not (project / "data" / "prepared" / "meta.json").exists()  # nothing ran
