"""``unlearn preset``: every preset applies to params.yaml and validates, comments stay,
and a bad preset changes nothing."""

import subprocess

import pytest
import yaml

from tests.conftest import ROOT
from unlearn.config import parse_params
from unlearn.errors import ConfigError
from unlearn_pipeline.presets import apply, available

PARAMS = (ROOT / "params.yaml").read_text()


def _comments(text: str) -> list[str]:
    return [line[line.index("#"):] for line in text.splitlines() if "#" in line]


@pytest.mark.parametrize("name", available(ROOT))
def test_every_preset_applies_keeps_the_comments_and_validates(name):
    preset = yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text())
    text = apply(PARAMS, preset)
    assert _comments(text) == _comments(apply(PARAMS, {"drop": preset.get("drop", [])}))  # dropped: theirs go
    params = parse_params(yaml.safe_load(text))
    for section, values in {k: v for k, v in preset.items() if k != "drop"}.items():
        for key, value in values.items():
            got = getattr(getattr(params, section), key)
            if not isinstance(value, dict):
                assert got == value, (section, key)


def test_the_fast_preset_is_the_paper_pipeline_cut_down():
    paper = yaml.safe_load((ROOT / "presets" / "paper-cifar10.yaml").read_text())
    fast = yaml.safe_load((ROOT / "presets" / "paper-cifar10-fast.yaml").read_text())
    assert fast["model"] == paper["model"] and fast["data"] == paper["data"]
    assert fast["references"]["K"] == 4 and fast["train"]["epochs"] < paper["train"]["epochs"]


@pytest.mark.parametrize(("name", "limit_minutes"), [("paper-cifar10-fast", 10), ("paper-cifar10", None)])
def test_the_gpu_presets_carry_their_cost_table_and_the_fast_one_fits_ten_minutes(name, limit_minutes):
    """The header's table is the cost model's (so it cannot go stale), counted at 3 s/epoch."""
    from unlearn_pipeline.cost import cost_table, pipeline_parts

    params = parse_params(yaml.safe_load(apply(PARAMS, yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text()))))
    table, seconds = cost_table(params, 3.0, 7.0)
    header = "\n".join(line.removeprefix("# ") for line in (ROOT / "presets" / f"{name}.yaml").read_text().splitlines()
                       if line.startswith("# |"))
    assert header == table
    if limit_minutes:
        assert seconds <= limit_minutes * 60
    parts = {part.name.split(" (")[0]: part.epochs for part in pipeline_parts(params)}
    assert parts["original"] == params.train.epochs  # 50,000 images an epoch: one epoch-equivalent


def test_preset_cost_refuses_bad_figures_and_writes_nothing(project):
    before = (project / "params.yaml").read_text()
    done = subprocess.run(["unlearn", "preset", "cpu-cifar10", "--cost", "--s-per-epoch", "0"], cwd=project,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: --s-per-epoch 0.0")
    done = subprocess.run(["unlearn", "preset", "cpu-cifar10", "--cost"], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0 and "| **total**" in done.stdout
    assert (project / "params.yaml").read_text() == before


def test_preset_help_lists_each_preset_with_what_it_runs_needs_and_costs():
    done = subprocess.run(["unlearn", "preset", "--help"], cwd=ROOT, capture_output=True, text=True)
    listed = {line.split(":")[0].strip(): line for line in done.stdout.split("presets:\n")[1].splitlines()}
    assert done.returncode == 0 and set(listed) == set(available(ROOT))
    assert "Needs cifar10 under data/raw/ or data.path; about 5.0 h at 3 s per GPU epoch" in listed["paper-cifar10"]
    assert "Needs digits (embedded)." in listed["scrub-official"]


def test_a_dropped_method_leaves_the_graph_and_a_wrong_path_is_refused():
    text = apply(PARAMS, {"drop": ["unlearn.ssd", "unlearn_class.unsir"], "unlearn": {"scrub": {"epochs": 3}}})
    params = parse_params(yaml.safe_load(text))
    assert "ssd" not in params.unlearn.methods and "unsir" not in params.unlearn_class.methods
    assert "ssd" in params.unlearn_class.methods and params.unlearn.scrub.epochs == 3
    assert len(text.splitlines()) == len(PARAMS.splitlines()) - 4 - 13  # ssd's 4 lines, unsir's 13
    with pytest.raises(ConfigError, match="preset: drop unlearn.nope: params.yaml has no such section"):
        apply(PARAMS, {"drop": ["unlearn.nope"]})


def test_a_missing_key_is_added_in_its_section():
    text = apply(PARAMS, {"unlearn": {"amun": {"momentum": 0.8}}})
    assert yaml.safe_load(text)["unlearn"]["amun"]["momentum"] == 0.8
    assert len(text.splitlines()) == len(PARAMS.splitlines()) + 1


def test_the_command_refuses_a_bad_preset_and_writes_nothing(project):
    (project / "presets" / "broken.yaml").write_text("model: {name: nope}\n")
    before = (project / "params.yaml").read_text()
    done = subprocess.run(["unlearn", "preset", "broken"], cwd=project, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: params.yaml with preset broken: model.name")
    assert (project / "params.yaml").read_text() == before
    done = subprocess.run(["unlearn", "preset", "nope"], cwd=project, capture_output=True, text=True)
    assert done.returncode == 2 and f"presets: {', '.join(available(project))}\n" in done.stderr
    done = subprocess.run(["unlearn", "preset", "cpu-cifar10"], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0 and "data.dataset" not in done.stderr
    assert yaml.safe_load((project / "params.yaml").read_text())["data"]["dataset"] == "cifar10"


@pytest.mark.parametrize(("name", "method", "expected"), [
    ("scrub-official", "scrub", {"epochs": 3, "max_epochs": 2, "alpha": 0.001, "gamma": 0.99, "kd_temperature": 4.0,
                                 "kd_t_squared": True, "lr": 5e-4, "batch_size": 256, "forget_batch_size": 512}),
    ("be-official", "be", {"epochs": 10, "lr": 1e-5, "use_remain": False, "weight_decay": 5e-4}),
])
def test_the_official_presets_set_their_method_section_alone(name, method, expected):
    preset = yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text())
    before, after = parse_params(yaml.safe_load(PARAMS)), parse_params(yaml.safe_load(apply(PARAMS, preset)))
    section = getattr(after.unlearn_class, method)
    assert {key: getattr(section, key) for key in expected} == expected
    assert after.model_copy(update={"unlearn_class": before.unlearn_class}) == before
