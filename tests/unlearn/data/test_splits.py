import numpy as np
import pytest

from unlearn.config import ForgetConfig
from unlearn.data import Splits, check_splits, class_splits, make_splits, train_test_split
from unlearn.errors import ConfigError, DataError

LABELS = np.repeat(np.arange(10), 50)  # 500 samples, 50 per class


def random_forget(**kw) -> ForgetConfig:
    return ForgetConfig(mode="random", **kw)


def test_same_seed_same_splits_other_seed_differs():
    a = make_splits(LABELS, seed=3, forget=random_forget(fraction=0.1))
    b = make_splits(LABELS, seed=3, forget=random_forget(fraction=0.1))
    c = make_splits(LABELS, seed=4, forget=random_forget(fraction=0.1))
    for name in ("train", "test", "forget", "remain"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.forget, c.forget)


def test_random_mode_is_disjoint_and_covers_train():
    s = make_splits(LABELS, seed=0, forget=random_forget(fraction=0.2), test_fraction=0.3)
    assert len(s.test) == 150 and len(s.train) == 350
    assert len(s.forget) == 70
    assert not set(s.forget) & set(s.remain)
    assert set(s.forget) | set(s.remain) == set(s.train)
    assert not set(s.train) & set(s.test)
    assert set(s.train) | set(s.test) == set(range(500))


def test_count_and_official_test_split():
    s = make_splits(LABELS, seed=0, forget=random_forget(fraction=None, count=17), test_start=400)
    np.testing.assert_array_equal(s.test, np.arange(400, 500))
    assert len(s.forget) == 17 and s.forget.max() < 400


def test_forget_settings_do_not_move_the_test_split():
    a = make_splits(LABELS, seed=0, forget=random_forget(fraction=0.1))
    b = make_splits(LABELS, seed=0, forget=random_forget(fraction=None, count=5))
    np.testing.assert_array_equal(a.test, b.test)


def test_class_mode_takes_whole_classes_from_train_only():
    s = make_splits(LABELS, seed=0, forget=ForgetConfig(mode="class", fraction=None, classes=[2, 7]))
    assert set(LABELS[s.forget]) == {2, 7}
    assert not np.isin(LABELS[s.remain], [2, 7]).any()
    assert np.isin(LABELS[s.test], [2, 7]).any()  # the test split keeps the class
    assert len(s.forget) == np.isin(LABELS[s.train], [2, 7]).sum()


def test_class_not_in_dataset_is_named():
    with pytest.raises(ConfigError, match=r"data.forget.classes = \[12\]: class 12 is not in the dataset"):
        make_splits(LABELS, seed=0, forget=ForgetConfig(mode="class", fraction=None, classes=[12]))


def test_count_larger_than_train_is_rejected():
    with pytest.raises(ConfigError, match=r"data.forget.count = 5000: gives 5000 forget samples"):
        make_splits(LABELS, seed=0, forget=random_forget(fraction=None, count=5000))


def test_check_splits_detects_overlap():
    good = make_splits(LABELS, seed=0, forget=random_forget(fraction=0.1))
    bad = Splits(good.train, good.test, good.forget, np.concatenate([good.remain, good.forget[:1]]))
    with pytest.raises(DataError, match="overlap"):
        check_splits(bad, len(LABELS))
    with pytest.raises(DataError, match="out of range"):
        check_splits(Splits(good.train, good.test + 1000, good.forget, good.remain), len(LABELS))


def test_class_track_splits_take_one_class_out_of_train_and_test():
    s = make_splits(LABELS, seed=0, forget=random_forget(fraction=0.1))
    parts = class_splits(LABELS, s.train, s.test, 3)
    assert (LABELS[parts["forget"]] == 3).all() and (LABELS[parts["forget_test"]] == 3).all()
    assert not (LABELS[parts["remain"]] == 3).any() and not (LABELS[parts["test"]] == 3).any()
    assert sorted(np.concatenate([parts["forget"], parts["remain"]])) == sorted(s.train)
    assert sorted(np.concatenate([parts["test"], parts["forget_test"]])) == sorted(s.test)


def test_class_track_refuses_a_missing_class_and_forgetting_every_class():
    train, test = np.arange(400), np.arange(400, 500)
    message = r"class_track.forget_class = 12: the dataset has no such class \(labels are 0..9\)"
    with pytest.raises(ConfigError, match=message):
        class_splits(LABELS, train, test, 12)
    with pytest.raises(ConfigError, match="forgetting every class leaves nothing to remain"):
        class_splits(np.zeros(50, dtype=int), np.arange(40), np.arange(40, 50), 0)



@pytest.mark.parametrize("level, ranks", [("low", (0.0, 0.2)), ("medium", (0.4, 0.6)), ("high", (0.8, 1.0))])
def test_a_memorized_forget_set_comes_from_its_level_of_the_scores(level, ranks):
    train, _ = train_test_split(len(LABELS), seed=0)
    scores = np.random.default_rng(5).random(len(train))
    split = make_splits(LABELS, seed=0, memorization=scores,
                        forget=ForgetConfig(mode="memorized", count=20, fraction=None, level=level, pool=0.2))
    np.testing.assert_array_equal(split.train, train)
    positions = np.searchsorted(train, split.forget)
    rank = np.argsort(np.argsort(scores))[positions] / len(train)  # each forget sample's quantile in train
    assert len(split.forget) == 20 and ranks[0] - 0.01 <= rank.min() and rank.max() <= ranks[1] + 0.01
    if level != "medium":
        assert (scores[positions].mean() > scores.mean()) == (level == "high")


def test_memorized_mode_refuses_more_samples_than_its_pool_and_missing_scores():
    train, _ = train_test_split(len(LABELS), seed=0)
    too_many = ForgetConfig(mode="memorized", count=100, fraction=None, pool=0.1)
    with pytest.raises(ConfigError, match=r"data.forget.count = 100: gives 100 forget samples; the high pool "
                                          r"\(data.forget.pool = 0.1 of train\) has 38: lower it or raise pool"):
        make_splits(LABELS, seed=0, forget=too_many, memorization=np.zeros(len(train)))
    with pytest.raises(DataError, match="memorized needs the memorisation score of every train sample"):
        make_splits(LABELS, seed=0, forget=ForgetConfig(mode="memorized"))
