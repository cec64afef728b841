import pytest

from unlearn.config import Params, load_params, parse_params
from unlearn.errors import ConfigError
from tests.conftest import ROOT


def error_for(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_are_valid():
    params = parse_params({})
    assert params.data.dataset == "digits" and params.train.epochs >= 1


def test_project_params_file_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.train.weight_decay == pytest.approx(5e-4)


@pytest.mark.parametrize("raw, expected", [
    ({"data": {"forget": {"fraction": 1.5}}}, "params.yaml: data.forget.fraction = 1.5: must be in (0, 1)"),
    ({"data": {"forget": {"fraction": 0}}}, "params.yaml: data.forget.fraction = 0: must be in (0, 1)"),
    ({"train": {"epochs": 0}}, "params.yaml: train.epochs = 0: must be >= 1"),
    ({"train": {"epochs": "ten"}}, "params.yaml: train.epochs = ten: must be an integer"),
    ({"train": {"epochs": 2.5}}, "params.yaml: train.epochs = 2.5: must be an integer"),
    ({"train": {"augment": "yes"}}, "params.yaml: train.augment = 'yes': must be true or false"),
    ({"train": {"lr": -0.1}}, "params.yaml: train.lr = -0.1: must be > 0"),
    ({"train": {"schedule": "linear"}}, "params.yaml: train.schedule = linear: must be one of: 'constant', 'step' or 'cosine'"),
    ({"seed": -1}, "params.yaml: seed = -1: must be >= 0"),
    ({"model": {"name": "vgg"}}, "params.yaml: model.name = vgg: must be one of: resnet18, small_cnn, or "
                                 "torchvision:<builder> (e.g. torchvision:resnet50)"),
])
def test_bad_values_name_key_value_and_allowed(raw, expected):
    assert error_for(raw) == expected


def test_unknown_key_suggests_the_closest():
    message = error_for({"train": {"epoch": 3}})
    assert message.startswith("params.yaml: train.epoch: unknown key; did you mean 'epochs'?")


def test_unknown_section():
    assert "unknown key" in error_for({"trian": {}})


def test_contradictory_forget_settings():
    message = error_for({"data": {"forget": {"fraction": 0.1, "count": 10}}})
    assert message.startswith("params.yaml: data.forget: random mode needs exactly one of fraction or count")
    assert "non-empty list of classes" in error_for({"data": {"forget": {"mode": "class"}}})


@pytest.mark.parametrize("raw, expected", [
    ({"data": {"forget": {"mode": "list"}}}, "params.yaml: data.forget: list mode needs file (a forget list under "
                                             "data/user/forget/), and only list mode reads it"),
    ({"data": {"forget": {"file": "data/user/forget/a.txt"}}}, "params.yaml: data.forget: list mode needs file"),
    ({"data": {"forget": {"mode": "list", "file": "lists/a.txt"}}},
     "params.yaml: data.forget.file = lists/a.txt: forget lists are read from data/user/forget/ (a DVC dependency "
     "of the stage that reads them); put the file there and give its path from the project root"),
    ({"requests": {"files": ["/abs/b.txt"]}}, "params.yaml: requests.files.0 = /abs/b.txt: forget lists are read"),
    ({"unlearn": {"ft": {}}, "requests": {"files": ["data/user/forget/b.txt"], "methods": ["ft", "amun"]}},
     "params.yaml: requests.methods = [ft, amun]: 'amun' is not a method of unlearn (one of: ft)"),
    ({"unlearn": {"ft": {}}, "audit": {"method": "salun"}},
     "params.yaml: audit.method = salun: 'salun' is not a method of unlearn (one of: ft)"),
    ({"unlearn": {"ft": {}, "amun": {}}, "requests": {"files": ["data/user/forget/b.txt"], "methods": ["ft"]}},
     "params.yaml: audit.method = amun: not in requests.methods ['ft'], so it would not apply the later requests"),
])
def test_forget_lists_requests_and_audit_errors(raw, expected):
    assert error_for(raw).startswith(expected)


def test_list_mode():
    params = parse_params({"data": {"forget": {"mode": "list", "file": "./data/user/forget/x.txt"}}})
    assert params.data.forget.file == "data/user/forget/x.txt"


def test_class_mode():
    params = parse_params({"data": {"forget": {"mode": "class", "fraction": None, "classes": [3]}}})
    assert params.data.forget.classes == [3]


def test_yaml_errors_are_one_line(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match=r"params.yaml: invalid YAML at line \d+"):
        load_params(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "missing.yaml")


def test_scientific_notation_without_dot_is_a_float(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  weight_decay: 5e-4\n")
    assert load_params(path).train.weight_decay == pytest.approx(5e-4)


def test_model_names_match_the_registry():
    from unlearn.config import MODEL_NAMES
    from unlearn.models import MODELS

    assert list(MODEL_NAMES) == MODELS.names()


@pytest.mark.parametrize("raw, expected", [
    ({"references": {"K": 0}}, "params.yaml: references.K = 0: must be >= 1"),
    ({"references": {"K": 1}}, "params.yaml: references.K = 1: online attacks need an IN and an OUT model for "
                               "every sample (>= 2 models), or set mia.online: false"),
    ({"references": {"K": 2}}, "params.yaml: references.K = 2: LiRA with per-sample variances needs 2 OUT (and "
                               "online: 2 IN) models per sample (>= 4 models), or set mia.fixed_variance: true"),
    ({"sweep": {"references": 3}}, "params.yaml: sweep.references = 3: LiRA with per-sample variances needs 2 OUT "
                                   "(and online: 2 IN) models per sample (>= 4 models), or set "
                                   "mia.fixed_variance: true"),
    ({"smoothness": {"targets": [1.0, 1.0]}}, "params.yaml: smoothness: targets [1.0, 1.0] must be non-empty, "
                                              "without repeats"),
    ({"transfer": {"seeds": []}}, "params.yaml: transfer: seeds must list at least one value"),
    ({"mia": {"gamma": 0}}, "params.yaml: mia.gamma = 0: must be > 0"),
    ({"mia": {"signal": "logits"}}, "params.yaml: mia.signal = logits: must be one of: 'taylor_soft_margin' or 'softmax'"),
    ({"unlearn": {"amn": {}}}, "params.yaml: unlearn.amn: unknown key; did you mean 'amun'? allowed: amun, "
                               "amun_no_remain, amun_salun, ft, rl, ga, l1_sparse, salun, bs, neggrad_plus, scrub, ssd"),
    ({"unlearn": {"salun": {"mask_fraction": 1.0}}}, "params.yaml: unlearn.salun.mask_fraction = 1.0: must be in (0, 1)"),
    ({"adversarial": {"eps_init": 0}}, "params.yaml: adversarial.eps_init = 0: must be > 0"),
    ({"execution": {"workers": 0}}, "params.yaml: execution.workers = 0: must be >= 1"),
    ({"class_track": {"forget_class": 10}}, "params.yaml: class_track.forget_class = 10: digits has classes 0..9"),
    ({"class_track": {"forget_class": -1}}, "params.yaml: class_track.forget_class = -1: must be >= 0"),
    ({"class_track": {"retrain_seeds": 1}}, "params.yaml: class_track.retrain_seeds = 1: must be >= 2"),
    ({"unlearn_class": {"trw": {"beta": -1.0}}}, "params.yaml: unlearn_class.trw.beta = -1.0: must be >= 0"),
    ({"unlearn_class": {"amun": {}}}, "params.yaml: unlearn_class.amun: unknown key; did you mean 'salun'? allowed: trw, trw_maxent, ft, rl, ga, bs, be, "
                                      "salun, scrub, neggrad_plus, ssd, unsir"),
    ({"mia_nn": {"neighbours": 10}}, "params.yaml: mia_nn.neighbours = 10: must be at most 9 (the classes of digits "
                                     "other than the forgotten one)"),
    ({"sweep": {"tuning_forget_seed": 0}}, "params.yaml: sweep: tuning_forget_seed 0 is also an evaluation forget "
                                           "seed; tune on a separate forget set"),
    ({"sweep": {"seeds": [1, 1]}}, "params.yaml: sweep: seeds [1, 1] must be non-empty, without repeats"),
    ({"sweep": {"lr_grid": {"ft": []}}}, "params.yaml: sweep: lr_grid.ft is empty"),
    ({"execution": {"address": "localhost:8786"}}, "params.yaml: execution.address = localhost:8786: must be a Dask "
                                                   "scheduler address such as tcp://127.0.0.1:8786 (or null: run "
                                                   "locally)"),
    ({"mia_nn": {"features": "raw"}}, "params.yaml: mia_nn.features = raw: must be one of: 'neighbours' or 'sorted'"),
    ({"ulira": {"shadows": 2}}, "params.yaml: ulira: shadows 2: U-LiRA needs 0 (off) or >= 4 (2 that unlearned and 2 "
                                "that never saw each candidate)"),
    ({"unlearn_class": {"trw": {"target": "onehot"}}}, "params.yaml: unlearn_class.trw.target = onehot: must be one "
                                                        "of: 'maxent' or 'softmax'"),
    ({"findings": {"margins": {"F1": 0.5}}}, "params.yaml: findings: margins.F2 is missing; every finding F1, F2, "
                                             "F3, F4, F5, F6 needs a margin"),
    ({"findings": {"margins": {"F7": 1.0}}}, "params.yaml: findings.margins: unknown key 'F7'; must be one of: "
                                             "'F1', 'F2', 'F3', 'F4', 'F5' or 'F6'"),
    ({"findings": {"alpha": 0.0}}, "params.yaml: findings.alpha = 0.0: must be in (0.0, 0.5]"),
    ({"class_sweep": {"tuning_class": 1}}, "params.yaml: class_sweep: tuning_class 1 is also an evaluated class; "
                                           "tune on another class"),
    ({"class_sweep": {"classes": [1, 12]}}, "params.yaml: class_sweep.classes = [1, 12]: digits has classes 0..9"),
    ({"class_sweep": {"lr_grid": {"amun": [0.1]}}}, "params.yaml: class_sweep.lr_grid: unknown key 'amun'; must be "
                                                    "one of: 'trw', 'trw_maxent', 'ft', 'rl', 'ga', 'bs', 'be', 'salun', 'scrub', "
                                                    "'neggrad_plus', 'ssd' or 'unsir'"),
])
def test_bad_attack_and_unlearning_settings(raw, expected):
    assert error_for(raw) == expected


def test_small_reference_sets_work_with_the_matching_options():
    assert parse_params({"references": {"K": 2}, "mia": {"fixed_variance": True}}).references.K == 2
    assert parse_params({"references": {"K": 1}, "mia": {"online": False, "fixed_variance": True}}).references.K == 1


def test_u_lira_pools_its_variance_below_16_shadows_unless_told():
    from unlearn.config import parse_params

    assert parse_params({"ulira": {"shadows": 8}}).ulira.pooled_variance
    assert not parse_params({"ulira": {"shadows": 16}}).ulira.pooled_variance
    assert not parse_params({"ulira": {"shadows": 8, "fixed_variance": False}}).ulira.pooled_variance
