"""End to end: the real `dvc repro` on tiny params, caching, partial re-runs, MLflow runs."""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ALL_STAGES, CLASS_METHODS, MODELS, STUDY_STAGES, mlflow_runs, write_params

pytestmark = pytest.mark.slow
CLASS_KEYS = {"forget_acc", "retain_acc", "test_acc", "mia_nn", "mia_nn_gap", "tv_to_retrain", "avg_gap", "runtime_s",
              "ulira_auc", "ulira_gap"}
METHOD_KEYS = {"forget_acc", "retain_acc", "test_acc", "mia_svc", "avg_gap", "runtime_s", "runtime_vs_retrain",
               "mia_rmia_auc", "mia_lira_auc", "mia_rmia_tpr_at_1fpr", "mia_loss_auc", "avg_gap_svc", "ulira_auc",
               "ulira_gap"}


def repro(root, *targets: str) -> set[str]:
    done = subprocess.run(["dvc", "repro", *targets], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return {name.removeprefix("studies/dvc.yaml:") for name in re.findall(r"Running stage '([^']+)'", done.stdout)}


def _assert_shadow_adversarial_is_what_amun_would_build(project):
    """Stage adversarial's D_A of each random-track shadow equals what AMUN's stages built before."""
    import torch

    from unlearn.config import load_params
    from unlearn_pipeline.common import load_prepared
    from unlearn_pipeline.model_store import build_model
    from unlearn_pipeline.ulira import adversarial_examples, candidates_of, load_shadow_adversarial, shadow_path

    params, data = load_params(project / "params.yaml"), load_prepared()
    saved = load_shadow_adversarial(params.ulira.shadows)
    assert len(saved) == 4
    model = build_model(params, data.meta)
    model.load_state_dict(torch.load(project / shadow_path("random", "original", 3), weights_only=True)["state"])
    forget = torch.as_tensor(candidates_of("random", data, params).shadow_forget(3))
    built = adversarial_examples(model, data, forget, params)
    assert all(torch.equal(getattr(saved[3], k), getattr(built, k)) for k in vars(built)) and len(built.labels) > 0


def test_repro_caches_reruns_what_changed_and_tracks_each_stage(project):
    assert repro(project) == {"code", *ALL_STAGES}  # code: each stage's code hashes (no MLflow run)
    assert list((project / ".checkpoints").glob("*")) == []  # every training removed its checkpoint
    for name in ("original", "retrain"):
        metrics = json.loads((project / "metrics" / "random" / f"{name}.json").read_text())
        assert {"forget_acc", "retain_acc", "test_acc"} <= set(metrics)
        assert all(0 <= metrics[k] <= 100 for k in ("forget_acc", "retain_acc", "test_acc"))
    for name in MODELS:
        metrics = json.loads((project / "metrics" / "random" / f"{name}.json").read_text())
        assert METHOD_KEYS <= set(metrics), name
        assert metrics["runtime_s"] > 0 and metrics["avg_gap"] >= 0
        assert all(0 <= metrics[k] <= 100 for k in ("mia_rmia_auc", "mia_lira_auc", "mia_rmia_tpr_at_1fpr",
                                                    "ulira_auc"))
        if name == "retrain":
            assert metrics["avg_gap"] == 0 and metrics["runtime_vs_retrain"] == 1 and metrics["ulira_gap"] == 0
        assert metrics["ulira_gap"] == abs(metrics["ulira_gap_signed"])
        assert metrics["ulira_to_50"] == pytest.approx(metrics["ulira_auc"] - 50, abs=1e-3)
        assert len((project / "plots" / "roc" / f"{name}.csv").read_text().splitlines()) == 102
    assert (project / "data" / "references" / "keep.npy").exists()
    page = (project / "reports" / "index.html").read_text()
    assert page.count("<table>") == 2 and "data:image/png;base64," in page
    report = (project / "reports" / "results.md").read_text()
    with_remain, without = report.split("## Without remain access")
    assert all(f"| {m} |" in with_remain for m in ("retrain", "original", "amun", "amun_salun", "ft", "rl",
                                                     "l1_sparse", "salun", "bs", "neggrad_plus", "scrub", "ssd"))
    assert all(f"| {m} |" in without for m in ("retrain", "amun_no_remain", "ga"))
    adversarial = json.loads((project / "metrics" / "adversarial.json").read_text())
    assert adversarial["samples"] == 135 and adversarial["eps_init"] > 0 and adversarial["capped"] == 0
    for name in ("original", "retrain"):  # FastClip at target 2.0 (tiny params), conv layers alone (bn: ignore)
        rows = (project / "plots" / "lipschitz" / f"{name}.csv").read_text().splitlines()[1:]
        assert len(rows) == 4 and all(float(row.split(",")[1]) <= 2.04 for row in rows)
    for name in ("original", "retrain", *CLASS_METHODS):
        metrics = json.loads((project / "metrics" / "class" / f"{name}.json").read_text())
        assert CLASS_KEYS <= set(metrics), name
        assert all(0 <= metrics[k] <= 100 for k in ("forget_acc", "retain_acc", "test_acc", "mia_nn"))
        assert 0 <= metrics["tv_to_retrain"] <= 1 and metrics["runtime_s"] > 0 and 0 <= metrics["ulira_auc"] <= 100
    audit = json.loads((project / "metrics" / "audit.json").read_text())
    assert audit["method"] == "amun" and audit["reference"] == "retrain" and isinstance(audit["forgotten"], bool)
    assert json.loads((project / "metrics" / "requests.json").read_text())["methods"] == {}
    assert "tilt_strength" in json.loads((project / "metrics" / "class" / "trw.json").read_text())
    assert len(list((project / "data" / "ulira" / "shadows" / "class").glob("original_*.pt"))) == 4
    _assert_shadow_adversarial_is_what_amun_would_build(project)
    retrained = json.loads((project / "metrics" / "class" / "retrain.json").read_text())
    assert retrained["forget_acc"] == 0 and retrained["seeds"] == 2 and retrained["avg_gap"] == 0
    class_report = (project / "reports" / "class_results.md").read_text()
    assert all(f"| {m} |" in class_report for m in ("retrain", "original", *CLASS_METHODS))
    assert "data:image/png;base64," in (project / "reports" / "class.html").read_text()
    runs = mlflow_runs(project)
    assert all(r.info.status == "FINISHED" for r in runs)
    retrained = [r for r in runs if r.data.tags.get("unlearn.job") == "retrain_class"]
    assert sorted(r.data.tags["seed_index"] for r in retrained) == ["0", "1"]
    jobs = [r for r in runs if r.data.tags.get("unlearn.job")]
    runs = [r for r in runs if "dvc.stage" in r.data.tags]
    assert sorted(r.data.tags["dvc.stage"] for r in runs) == sorted(ALL_STAGES)
    references_run = next(r for r in runs if r.data.tags["dvc.stage"] == "references")
    assert sorted(r.data.tags["reference"] for r in jobs if "reference" in r.data.tags) == ["0", "1", "2", "3"]
    reference_jobs = [r for r in jobs if "reference" in r.data.tags]
    assert all(r.data.tags["mlflow.parentRunId"] == references_run.info.run_id for r in reference_jobs)

    cache = project / "src" / "unlearn" / "attacks" / "__pycache__"  # what a stage importing the folder leaves
    cache.mkdir(exist_ok=True)
    (cache / "pgd.cpython-311.pyc").write_bytes(b"bytecode")
    assert repro(project) == set()  # a folder dependency's bytecode is no change of it (.dvcignore)
    assert len(mlflow_runs(project)) == len(ALL_STAGES) + len(jobs)
    readme = (project / "README.md").read_text()
    command = next(line.split("#")[0].split() for line in readme.splitlines() if "dvc exp show --drop" in line)
    shown = subprocess.run([*command[:3], "--csv", *[arg.strip("'") for arg in command[3:]]], cwd=project,
                           capture_output=True, text=True)
    columns = shown.stdout.splitlines()[0].split(",")
    assert shown.returncode == 0 and len(columns) <= 40 and "random.avg_gap.amun" in columns, shown.stdout[:500]
    assert "class.avg_gap.trw" in columns and not any("/" in column for column in columns)
    plots = json.loads(subprocess.run(["dvc", "plots", "show", "--json"], cwd=project, capture_output=True,
                                      text=True).stdout)["data"]
    curve = json.dumps({k: v for k, v in plots["plots/train/original.csv"][0]["content"].items() if k != "data"})
    assert '"field": "epoch"' in curve and '"field": "accuracy"' in curve and '"field": "lr"' not in curve
    shown = subprocess.run(["dvc", "plots", "show", "-o", "offline_plots"], cwd=project, capture_output=True, text=True)
    page = (project / "offline_plots" / "index.html").read_text()
    assert shown.returncode == 0 and "vegaEmbed(" in page and "vega-lite 5.2.0" in page  # Vega inlined
    assert "cdn.jsdelivr.net" not in page and not re.search(r"(src|href)=[\"']https?:", page)  # nothing to fetch

    subprocess.run(["git", "add", "-A"], cwd=project, check=True)  # the baseline `dvc exp show` compares with
    subprocess.run(["git", "commit", "-qm", "repro"], cwd=project, check=True)
    done = subprocess.run(["dvc", "exp", "run", "-S", "unlearn.ft.lr=0.02"], cwd=project, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = set(re.findall(r"Running stage '([^']+)'", done.stdout))
    assert ran == {"unlearn@ft", "evaluate", "requests", "audit"}  # requests and audit read its model
    shown = subprocess.run(["dvc", "exp", "show", "--only-changed", "--csv"], cwd=project, capture_output=True,
                           text=True)
    columns = shown.stdout.splitlines()[0].split(",")
    metrics = [c for c in columns if c.startswith(("random.", "class."))]
    assert "unlearn.ft.lr" in columns and "random.avg_gap.ft" in columns, shown.stdout[:500]
    assert all(c.endswith(".ft") for c in metrics), metrics  # what moved, and nothing else
    write_params(project, {"unlearn_class": {"trw": {"beta": 5.0}}})
    assert repro(project) == {"unlearn_class@trw", "evaluate_class"}
    with open(project / "src" / "unlearn" / "evaluation" / "gap.py", "a") as handle:  # the Avg Gap's code
        handle.write("\n# edited\n")
    assert repro(project) == {"code", "evaluate", "evaluate_class"}  # what scores a gap (the requests too), nothing else
    with open(project / "pipeline" / "stages" / "requests.py", "a") as handle:  # one stage's module
        handle.write("\n# edited\n")
    assert repro(project) == {"code", "requests", "requests_retrain"}  # unchanged outputs: evaluate and audit do not re-run

    import mlflow

    client = mlflow.MlflowClient()
    runs = [r for r in mlflow_runs(project) if "dvc.stage" in r.data.tags]
    latest_ft = max((r for r in runs if r.data.tags["dvc.stage"] == "unlearn@ft"), key=lambda r: r.info.start_time)
    assert latest_ft.data.params["unlearn.ft.lr"] == "0.02"
    assert "runtime_s" in latest_ft.data.metrics
    train_run = next(r for r in runs if r.data.tags["dvc.stage"] == "train")
    assert len(client.get_metric_history(train_run.info.run_id, "train_loss")) == 2
    assert len({r.data.tags["unlearn.execution"] for r in runs}) == 5  # one per `dvc repro` that ran stages
    images_hash = json.loads((project / "data" / "prepared" / "meta.json").read_text())["sha256"]["images.pt"]
    assert train_run.data.tags["data.sha256"] == images_hash and train_run.data.tags["version.dvc"][0].isdigit()
    prepare_run = next(r for r in runs if r.data.tags["dvc.stage"] == "prepare")
    assert {f.path for f in client.list_artifacts(prepare_run.info.run_id, "splits")} >= {
        "splits/forget.npy", "splits/remain.npy", "splits/test.npy", "splits/train.npy", "splits/meta.json"}

    import torch

    from unlearn.config import load_params
    from unlearn_pipeline.common import load_prepared, random_model
    from unlearn_pipeline.model_store import load_model

    params, data = load_params(project / "params.yaml"), load_prepared()
    x = data.images[:64].float() / 255
    for name in ("amun", "original", "retrain"):
        logged = mlflow.pytorch.load_model(f"models:/unlearn-{name}/latest").eval()
        with torch.no_grad():
            assert torch.equal(logged(x), load_model(random_model(name), params, data.meta).eval()(x)), name
    versions = sorted(client.search_model_versions("name='unlearn-ft'"), key=lambda v: int(v.version))
    assert [v.tags["unlearn.ft.lr"] for v in versions] == ["0.01", "0.02"]  # the params that made each version
    assert versions[0].tags["params.sha256"] != versions[1].tags["params.sha256"]
    assert "unlearn@ft (" in versions[1].description and "lr=0.02" in versions[1].description
    per_model = [r for r in mlflow_runs(project) if r.data.tags.get("unlearn.job") == "evaluate_random"]
    latest = max(per_model, key=lambda r: r.info.start_time)
    side_by_side = {r.data.tags["model"]: r.data.metrics for r in per_model
                    if r.data.tags["mlflow.parentRunId"] == latest.data.tags["mlflow.parentRunId"]}
    assert set(side_by_side) == set(MODELS) and {"avg_gap", "mia_rmia_auc", "forget_acc"} <= set(side_by_side["amun"])
    assert {r.data.tags["model"] for r in mlflow_runs(project) if r.data.tags.get("unlearn.job") == "evaluate_class"} >= {
        "retrain", "original", *CLASS_METHODS}
    assert {m.name for m in client.search_registered_models()} >= {
        "unlearn-original", "unlearn-retrain", *(f"unlearn-{m}" for m in MODELS[2:]),
        "unlearn-class-retrain", *(f"unlearn-class-{m}" for m in CLASS_METHODS)}

    # evaluate's models as parallel jobs (execution.workers 2) score exactly as in the stage's process
    scored = {p.name: json.loads(p.read_text()) for p in (project / "metrics" / "random").glob("*.json")}
    write_params(project, {"execution": {"workers": 2}})
    done = subprocess.run([sys.executable, "-m", "unlearn_pipeline", "evaluate"], cwd=project, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert {p.name: json.loads(p.read_text()) for p in (project / "metrics" / "random").glob("*.json")} == scored


def test_the_seed_study_runs_per_method_and_reruns_only_what_changed(project):
    assert repro(project, "studies/dvc.yaml") == {"code", "prepare", *STUDY_STAGES}
    sweep = json.loads((project / "metrics" / "sweep.json").read_text())
    assert sweep["cells"] == 2 and set(sweep["models"]) == {"retrain", "original", "amun", "ft"}
    assert sweep["lr"]["ft"] in (0.01, 0.05) and sweep["models"]["retrain"]["avg_gap"]["mean"] == 0
    assert {"mean", "std", "ci95"} == set(sweep["models"]["amun"]["mia_rmia_auc"])
    assert sweep["differences"]["ft"]["from"] == "amun" and set(sweep["differences"]["ft"]) == {
        "from", "avg_gap", "avg_gap_svc"}
    assert len(list((project / "data/sweep/cells/seed0-forget0/references").glob("logits_*.pt"))) == 4
    findings = json.loads((project / "metrics" / "findings.json").read_text())
    assert set(findings) == {"F1", "F2", "F3", "F4", "F5", "F6", "F1-memorised"}
    for finding in findings.values():
        assert finding["holds"] in ("yes", "no", "inconclusive", "untestable") and finding["rule"]
        assert (finding["why"] == "") == (finding["holds"] == "yes") and finding["evidence"]
        assert finding["margin"] > 0 and finding["detectable"] >= 0 and isinstance(finding["control"]["passed"], bool)
        assert (finding["holds"] == "untestable") == (not finding["control"]["passed"])
    assert findings["F1"]["cells"] == 2 and "ft - amun" in findings["F1"]["evidence"]["differences"]
    hard = json.loads((project / "data/sweep/memorized/high.json").read_text())["cells"]["seed0-forget0"]
    assert hard["forget_score_mean"] > hard["train_score_mean"] and set(hard["models"]) == {
        "original", "retrain", "amun", "ft"}
    memorised = findings["F1-memorised"]
    assert memorised["thesis"] is False and memorised["difficulty"] == "high" and memorised["cells"] == 1
    assert set(memorised["evidence"]["by_difficulty"]) == {"high"}
    assert "ft - amun" in memorised["evidence"]["differences"]
    assert memorised["evidence"]["by_difficulty"]["high"]["forget_score_mean"] == hard["forget_score_mean"]
    transfer = json.loads((project / "metrics" / "transfer.json").read_text())
    assert set(transfer["rate"]) == {"l2", "linf"} and set(transfer["rate"]["linf"]) == {
        "none->none", "none->L1", "L1->none", "L1->L1"}
    assert transfer["models"]["target.L1"]["smooth"] and transfer["models"]["source.L1"]["limit"] == 1.0
    assert "Findings" in (project / "reports" / "findings.md").read_text()
    classes = json.loads((project / "metrics" / "class_sweep.json").read_text())
    assert classes["cells"] == 1 and set(classes["models"]) == {"retrain", "original", "trw", "ft"}
    assert classes["lr"]["ft"] in (0.01, 0.05) and set(classes["differences_from_trw"]["ft"]) == {
        "mia_nn_gap", "ulira_gap", "tv_to_retrain"}
    assert {"mia_nn_floor", "ulira_auc"} <= set(classes["models"]["retrain"])
    assert findings["F6"]["cells"] == 1 and "U-LiRA: ft - trw" in findings["F6"]["evidence"]["differences"]
    assert "F5" in (project / "reports" / "class_sweep.md").read_text()
    write_params(project, {"unlearn": {"amun": {"lr": 0.02}}})
    assert repro(project, "studies/dvc.yaml") == {"sweep_method@amun", "sweep_report", "findings", "smoothness@0",
                                                  "memorized_level@high"}  # not FT's; those two read all of unlearn
    write_params(project, {"sweep": {"seeds": [0, 1, 2]}})
    assert repro(project, "studies/dvc.yaml") == {"sweep_cell@2-0", "sweep_method@amun", "sweep_method@ft",
                                                  "sweep_report", "memorized_level@high",
                                                  "findings"}  # one new cell's training; the methods' files moved
    points = [r for r in mlflow_runs(project) if r.data.tags.get("unlearn.job") == "tune-point"]
    assert sorted(r.data.params["lr"] for r in points if r.data.tags["mlflow.runName"].startswith(
        "sweep_method/ft/")) == ["0.01", "0.01", "0.05", "0.05"]
