"""The split file ``prepare`` writes for users training a model of their own."""

import csv
import io

import numpy as np

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
