"""End to end: a user's own model (a torchvision network saved by a plain script, outside the
pipeline) unlearns a 20-sample forget list with AMUN and FT, then a second request, and the
audit page comes out: the real `dvc repro audit`, MLflow in a temp dir."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import mlflow_runs

pytestmark = pytest.mark.slow

USER_SCRIPT = """  # the user's own training script: nothing of this project

import torch, torchvision
from sklearn.datasets import load_digits

torch.manual_seed(1)
net = torchvision.models.resnet18(num_classes=10)
net.conv1 = torch.nn.Conv2d(1, 64, 3, stride=1, padding=1, bias=False)  # 8x8 grey digits: a small-input stem
net.maxpool = torch.nn.Identity()
digits = load_digits()
x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
x = (x - x.mean()) / x.std()
y = torch.tensor(digits.target)
optimiser = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
for epoch in range(3):
    for batch in torch.randperm(len(y)).split(64):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
        optimiser.step()
torch.save(net.state_dict(), "data/user/models/mine.pt")
"""


def _train_indices(count: int, skip: int = 0) -> list[int]:
    from unlearn.config import ForgetConfig
    from unlearn.data import load_dataset, make_splits

    splits = make_splits(load_dataset("digits").labels.numpy(), seed=0, forget=ForgetConfig(count=1, fraction=None))
    return splits.train[skip:skip + count].tolist()


def test_a_forget_list_leaves_a_model_from_outside_and_the_audit_says_so(project):
    subprocess.run([sys.executable, "-c", USER_SCRIPT], cwd=project, check=True)
    first, second = _train_indices(20), _train_indices(10, skip=40)
    (project / "data/user/forget/request1.csv").write_text(
        "index,reason\n" + "".join(f"{i},asked on 2026-11-30\n" for i in first))
    (project / "data/user/forget/request2.txt").write_text("# second request\n" + "\n".join(map(str, second)))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["forget"] = {"mode": "list", "file": "data/user/forget/request1.csv", "fraction": None}
    params["model"] = {"name": "torchvision:resnet18", "cifar_stem": True}
    params["original"] = {"checkpoint": "data/user/models/mine.pt"}
    params["lipschitz"]["method"] = "none"
    params["unlearn"] = {name: {**params["unlearn"][name], "epochs": 1} for name in ("amun", "ft")}
    params["ulira"]["shadows"] = 0
    params["train"]["epochs"] = 1  # retrain, and the retrain after the second request
    params["references"]["K"] = 2  # with one pooled LiRA variance, one IN and one OUT model per sample suffice
    params["mia"]["fixed_variance"] = True
    params["requests"] = {"files": ["data/user/forget/request2.txt"], "methods": ["amun", "ft"]}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    repro = subprocess.run(["dvc", "repro", "audit"], cwd=project, capture_output=True, text=True)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]

    imported = torch.load(project / "data/models/original.pt", weights_only=True)
    mine = torch.load(project / "data/user/models/mine.pt", weights_only=True)
    assert all(torch.equal(imported[f"1.{key}"], value) for key, value in mine.items())
    assert np.load(project / "data/prepared/forget.npy").tolist() == sorted(first)

    requests = json.loads((project / "metrics/requests.json").read_text())
    for method in ("amun", "ft"):
        rows = requests["methods"][method]
        assert [(row["request"], row["samples"]) for row in rows] == [(1, 20), (2, 10)]
        assert all(row["avg_gap"] is not None and row["rmia_gap"] >= 0 for row in rows)
        after_first = torch.load(project / f"data/models/random/{method}.pt", weights_only=True)
        after_second = torch.load(project / f"data/requests/{method}-2.pt", weights_only=True)
        assert any(not torch.equal(after_first[key], after_second[key]) for key in after_first)
    audit = json.loads((project / "metrics/audit.json").read_text())
    assert audit["method"] == "amun" and audit["reference"] == "retrain"
    assert audit["answer"] in ("forgotten", "not forgotten", "too few samples to tell")
    assert audit["forgotten"] == (audit["answer"] == "forgotten") and len(audit["membership"]) == 2
    assert [t["samples"] for t in audit["membership"]] == [20, 30] and audit["membership"][0]["ci95"] > 0
    assert audit["ulira"] is None and audit["ulira_gap"] is None and audit["checks"]["ulira"] is None  # no shadows
    page = (project / "reports/audit.html").read_text()
    assert "Verdict: " in page and "Rule: " in page and "request1.csv" in page and "request2.txt" in page
    assert all(f"sample {i}" in page for i in first)
    assert "retraining from scratch without the removed samples took" in page
    assert "original (before)" in page and "reference RMIA AUC" in page and "LiRA AUC" in page
    assert "trained with your own recipe" in page  # the reference models used params.yaml's

    runs = {r.data.tags.get("dvc.stage"): r for r in mlflow_runs(project)}
    audited = runs["audit"]
    assert audited.data.tags.get("mlflow.log-model.history") or audited.outputs.model_outputs
    artifacts = mlflow_artifacts(audited.info.run_id)
    assert "audit/audit.html" in artifacts
    assert runs["import_model"].data.tags["original.checkpoint"] == "data/user/models/mine.pt"
    assert runs["train"].data.tags["original"] == "imported"
    version, registered = _registered("unlearn-audited-amun", "1")
    assert version.tags["audit.requests"] == "2" and version.tags["audit.samples"] == "30"
    final = torch.load(project / "data/requests/amun-2.pt", weights_only=True)
    assert all(torch.equal(registered[key], value) for key, value in final.items())  # after both requests

    params["retrain"] = {"enabled": False}  # no gold standard: scored against the attacks' AUC of 50
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = subprocess.run(["dvc", "repro", "audit"], cwd=project, capture_output=True, text=True)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    ran = set(re.findall(r"Running stage '([^']+)'", repro.stdout))
    assert ran == {"retrain", "requests_retrain", "evaluate", "audit"}  # no unlearning re-runs
    audit = json.loads((project / "metrics/audit.json").read_text())
    amun = json.loads((project / "metrics/random/amun.json").read_text())
    assert audit["reference"] == "AUC 50" and audit["rmia_gap"] >= abs(amun["mia_rmia_auc"] - 50) - 1e-9
    assert "avg_gap" not in amun and not (project / "metrics/random/retrain.json").exists()
    assert "Retraining is off (retrain.enabled: false)" in (project / "reports/results.md").read_text()
    assert "Retraining was not run" in (project / "reports/audit.html").read_text()
    rows = json.loads((project / "metrics/requests.json").read_text())["methods"]["amun"]
    assert all(row["avg_gap"] is None and "retrain" not in row for row in rows)

    with open(project / "data/user/forget/request2.txt", "a") as handle:  # one more sample in request 2
        handle.write(f"\n{_train_indices(1, skip=60)[0]}\n")
    repro = subprocess.run(["dvc", "repro", "audit"], cwd=project, capture_output=True, text=True)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    assert set(re.findall(r"Running stage '([^']+)'", repro.stdout)) == {
        "prepare", "requests", "requests_retrain", "evaluate", "audit"}

    (project / "data/user/models/mine.pt").rename(project / "data/user/models/moved.pt")  # same weights, elsewhere
    params["original"]["checkpoint"] = "data/user/models/moved.pt"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _changed(project) == {"import_model"}
    repro = subprocess.run(["dvc", "repro", "audit"], cwd=project, capture_output=True, text=True)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    assert set(re.findall(r"Running stage '([^']+)'", repro.stdout)) == {"import_model"}  # the same content
    params["train"]["epochs"] = 2  # the recipe of retrain and the references, not of an import
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = _changed(project)
    assert "import_model" not in changed and {"train", "retrain", "references"} <= changed
    params["train"]["epochs"] = 1

    torch.save(torch.nn.Linear(2, 2), project / "data/user/models/pickled.pt")  # a module, not its state_dict
    params["original"]["checkpoint"] = "data/user/models/pickled.pt"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = subprocess.run(["dvc", "repro", "audit"], cwd=project, capture_output=True, text=True)
    assert repro.returncode != 0 and "epoch 1/" not in repro.stdout + repro.stderr  # before any training
    assert "pickled.pt: holds a pickled object, not only weights; save the weights with torch.save(" in repro.stderr


def _changed(project) -> set[str]:
    """The stages up to ``audit`` whose own inputs changed (``dvc status``; the class track never ran here)."""
    status = subprocess.run(["dvc", "status", "--json", "--with-deps", "audit"], cwd=project, capture_output=True,
                            text=True)
    assert status.returncode == 0, status.stderr
    return set(json.loads(status.stdout))


def _registered(name: str, version: str):
    """A registered model version and its weights, from this test's store (MLflow's global
    URIs, which an earlier test in this process may have set, are pointed at it and reset)."""
    import os

    import mlflow

    uri = os.environ["MLFLOW_TRACKING_URI"]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        return (mlflow.MlflowClient().get_model_version(name, version),
                mlflow.pytorch.load_model(f"models:/{name}/{version}").state_dict())
    finally:
        mlflow.set_tracking_uri(None)  # also unsets the environment variable, which the next stages need
        mlflow.set_registry_uri(None)
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
        os.environ["MLFLOW_TRACKING_URI"] = uri


def mlflow_artifacts(run_id: str) -> set[str]:
    import os

    import mlflow

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    return {f"audit/{item.path.split('/')[-1]}" for item in client.list_artifacts(run_id, "audit")}
