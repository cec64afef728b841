"""The Prefect flow on a real (temporary, shared) Prefect server."""

import subprocess

import pytest

from pipeline.flows import dvc_stages, run
from tests.conftest import ALL_STAGES, mlflow_runs

pytestmark = pytest.mark.slow


def test_stage_order_comes_from_dvc(project):
    nodes = dvc_stages(project)
    order = [n.address for n in nodes]
    assert order[0] == "prepare"
    assert order.index("report") > max(order.index("evaluate@original"), order.index("evaluate@retrain"))
    by_name = {n.address: n for n in nodes}
    assert by_name["evaluate@original"].upstream == ("prepare", "references", "train")
    assert by_name["report"].cmd.startswith("python -m pipeline report original retrain amun ")
    assert by_name["unlearn@amun"].upstream == ("adversarial", "prepare", "train")
    assert [n.address for n in dvc_stages(project, ["train"])] == ["prepare", "train"]


def test_flow_runs_the_graph_concurrently_and_then_hits_the_cache(project, prefect_server):
    results = run(project)
    assert set(results.values()) == {"ran"} and len(results) == len(ALL_STAGES)
    status = subprocess.run(["dvc", "status", "--json"], cwd=project, capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout.strip() == "{}"

    runs = mlflow_runs(project)
    parents = [r for r in runs if r.data.tags.get("unlearn.flow") == "true"]
    assert len(parents) == 1
    stages = {r.data.tags["dvc.stage"]: r for r in runs if "dvc.stage" in r.data.tags}
    assert set(stages) == ALL_STAGES
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in stages.values())
    spans = sorted((r.info.start_time, r.info.end_time) for r in stages.values())
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))  # two stages overlapped

    again = run(project)
    assert set(again.values()) == {"cached"}
    assert len(mlflow_runs(project)) == len(runs) + 1  # only the new flow run
