"""The stage CLI: bad input stops the stage before any work, with one clear line."""

import subprocess
import sys

import yaml

from unlearn_pipeline.stages import load_all
from tests.conftest import ROOT, write_params


def run_stage(root, *args):
    return subprocess.run([sys.executable, "-m", "unlearn_pipeline", *args], cwd=root, capture_output=True, text=True)


def test_bad_param_exits_2_with_one_line_and_writes_nothing(project):
    write_params(project, {"data": {"forget": {"fraction": 1.5}}})
    done = run_stage(project, "prepare")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: params.yaml: data.forget.fraction = 1.5: must be in (0, 1)"
    assert "Traceback" not in done.stderr
    assert not (project / "data" / "prepared").exists()


def test_missing_inputs_are_named(project):
    done = run_stage(project, "train")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: data/models/imported.pt: file not found"  # import_model's


def test_missing_dataset_is_explained(project):
    write_params(project, {"data": {"dataset": "cifar10"}})
    done = run_stage(project, "prepare")
    assert done.returncode == 2
    assert "dataset 'cifar10' not found under data/raw/" in done.stderr
    assert "Traceback" not in done.stderr


def test_dvc_yaml_declares_exactly_the_sections_each_stage_reads():
    stages = load_all()
    for path in (ROOT / "dvc.yaml", ROOT / "studies" / "dvc.yaml"):
        for name, spec in yaml.safe_load(path.read_text())["stages"].items():
            spec = spec.get("do", spec)
            if not spec["cmd"].startswith("python -m unlearn_pipeline "):
                assert name == "code" and "params" not in spec, name  # hashing the code reads no params
                continue
            stage = spec["cmd"].removeprefix("python -m unlearn_pipeline ").split()[0]
            declared = tuple(p.replace("${key}", "${item}") for p in spec.get("params", []) if isinstance(p, str))
            assert declared == stages[stage].sections, name


def test_the_method_lists_are_params_yaml_sections_of_registered_methods():
    """dvc.yaml's foreach lists are params.yaml's unlearn / unlearn_class sections; each names a
    registered method of its track, and every registered method has a typed section."""
    from unlearn.config import UnlearnClassConfig, UnlearnConfig, load_params
    from unlearn.unlearning import METHODS

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert dvc["unlearn"]["foreach"] == "${unlearn}"
    assert dvc["unlearn_class"]["foreach"] == "${unlearn_class}"
    params = load_params(ROOT / "params.yaml")
    for track, config, methods in (("random", UnlearnConfig, params.unlearn.methods),
                                   ("class", UnlearnClassConfig, params.unlearn_class.methods)):
        assert set(config.model_fields) == {m for m in METHODS.names() if track in METHODS.get(m).tracks}, track
        assert methods and set(methods) <= set(config.model_fields)


def test_unknown_method_is_refused_before_any_work(project):
    done = run_stage(project, "unlearn", "amun2")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: unlearn: unknown item 'amun2': params.yaml has no section unlearn.amun2; "
                                   "known: amun, amun_no_remain, amun_salun, ft, rl, ga, l1_sparse, salun, bs, "
                                   "neggrad_plus, scrub, ssd")
    assert not (project.parent / "mlflow.db").exists() and not (project / "data" / "models").exists()


def test_unlearn_class_refuses_a_random_track_method_before_any_work(project):
    done = run_stage(project, "unlearn_class", "amun")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: unlearn_class: unknown item 'amun': params.yaml has no section "
                                   "unlearn_class.amun; known: trw, trw_maxent, ft, rl, ga, bs, be, salun, scrub, "
                                   "neggrad_plus, ssd, unsir")
    assert not (project / "data" / "models").exists()


def test_unlearn_refuses_a_forget_set_overlapping_test(project):
    import numpy as np

    assert run_stage(project, "prepare").returncode == 0
    prepared = project / "data" / "prepared"
    forget, test = np.load(prepared / "forget.npy"), np.load(prepared / "test.npy")

    np.save(prepared / "forget.npy", np.sort(np.concatenate([forget[1:], test[:1]])))
    done = run_stage(project, "unlearn", "ft")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: data/prepared/forget.npy: overlaps the test split data/prepared/test.npy; re-run `dvc repro prepare`")
    assert not (project / "data" / "models").exists()


def test_the_memorised_study_refuses_a_seed_the_seed_study_lacks_before_it_trains(project):
    write_params(project, {"memorized_study": {"seeds": [0, 7]}})
    results = project / "data" / "sweep" / "memorized" / "high.json"  # the committed study's
    before = results.read_text()
    done = run_stage(project, "memorized_level", "high")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: params.yaml: memorized_study.seeds = [0, 7]: 7 is not in sweep.seeds [0, 1] (the study reuses the "
        "seed study's reference models and learning rates)")
    done = run_stage(project, "memorized_level", "hard")
    assert done.stderr.strip().splitlines()[-1] == (
        "error: memorized_level: takes <level>, one of low, medium, high; got 'hard'")
    assert results.read_text() == before
