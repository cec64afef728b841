"""The split file ``prepare`` writes for users training a model of their own."""

import csv
import io
import json

import numpy as np
import pytest

from unlearn.config import ForgetConfig
from unlearn.data import load_dataset, make_splits
from unlearn_pipeline.stages.prepare import splits_csv


def test_splits_csv_names_every_sample_s_split_and_label():
    data = load_dataset("digits")
    splits = make_splits(data.labels.numpy(), seed=0, forget=ForgetConfig(fraction=0.1))
    rows = list(csv.DictReader(io.StringIO(splits_csv(splits.as_dict(), data.labels.tolist(), None))))
    assert len(rows) == len(data.labels) and list(rows[0]) == ["index", "label", "split"]
    for name in ("remain", "forget", "test"):
        listed = sorted(int(r["index"]) for r in rows if r["split"] == name)
        assert listed == sorted(getattr(splits, name).tolist()), name
    train = sorted(int(r["index"]) for r in rows if r["split"] in ("remain", "forget"))
    assert train == sorted(splits.train.tolist())
    assert all(int(r["label"]) == int(data.labels[int(r["index"])]) for r in rows)


def test_splits_csv_names_the_files_of_an_image_folder():
    splits = {"test": np.array([2]), "remain": np.array([0]), "forget": np.array([1])}
    text = splits_csv(splits, [0, 1, 1, 0], ("train/a/x.png", "train/b/y.png", "test/b/z.png", "train/a/w.png"))
    assert text.splitlines() == ["index,label,split,file", "0,0,remain,train/a/x.png", "1,1,forget,train/b/y.png",
                                 "2,1,test,test/b/z.png", "3,0,unused,train/a/w.png"]


@pytest.mark.slow
def test_a_memorized_forget_set_is_more_memorised_than_train_and_says_so(project):
    import subprocess

    from tests.conftest import write_params

    write_params(project, {"data": {"forget": {"mode": "memorized", "count": 30, "fraction": None, "level": "high",
                                               "pool": 0.2}},
                           "memorization": {"references": 4, "epochs": 2}})
    done = subprocess.run(["dvc", "repro", "prepare"], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "memorisation: model 4 of 4" in done.stderr
    summary = json.loads((project / "data/prepared/memorization.json").read_text())
    forget = np.load(project / "data/prepared/forget.npy")
    assert summary["scored"] and sorted(map(int, summary["forget"])) == forget.tolist() and len(forget) == 30
    quantiles = summary["quantiles"]
    assert quantiles["forget"]["mean"] > quantiles["train"]["mean"]  # the pool is train's top fifth
    assert quantiles["forget"]["min"] >= quantiles["train"]["q75"]

    write_params(project, {"data": {"forget": {"mode": "random", "count": None, "fraction": 0.1}}})
    done = subprocess.run(["dvc", "repro", "prepare"], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((project / "data/prepared/memorization.json").read_text()) == {"scored": False}
