"""Deterministic train / test / forget / remain splits.

All index arrays are sorted int64 positions into the dataset. The test split is
the dataset's official one when it has one, else a seeded random
``test_fraction`` of it. The forget set lies inside train; remain is the rest of
train. Random streams are derived from ``(seed, purpose)``, so the test split
does not move when only the forget settings change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from unlearn.config import ForgetConfig
from unlearn.data.forget_list import read_forget_list
from unlearn.errors import ConfigError, DataError

_TEST_STREAM, _FORGET_STREAM = 0, 1


@dataclass(frozen=True)
class Splits:
    train: np.ndarray
    test: np.ndarray
    forget: np.ndarray
    remain: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "test": self.test, "forget": self.forget, "remain": self.remain}


def make_splits(
    labels: np.ndarray,
    *,
    seed: int,
    forget: ForgetConfig,
    test_start: int | None = None,
    test_fraction: float = 0.25,
    names: Sequence[str] | None = None,
    memorization: np.ndarray | None = None,
) -> Splits:
    """Split ``labels`` (shape (N,)) into train / test / forget / remain index arrays
    (``names``: each sample's image path, for forget lists that name paths;
    ``memorization``: each train sample's score, in train's order, for ``mode: memorized``)."""
    labels = np.asarray(labels)
    n = len(labels)
    train, test = train_test_split(n, seed=seed, test_start=test_start, test_fraction=test_fraction)
    if forget.mode == "list":
        forget_idx = read_forget_list(forget.file, n_samples=n, train_size=len(train), test=test, names=names).indices
    elif forget.mode == "memorized":
        forget_idx = _memorized_indices(train, forget, seed, memorization)
    else:
        forget_idx = _forget_indices(labels, train, forget, seed)
    remain = np.setdiff1d(train, forget_idx, assume_unique=True)
    splits = Splits(train.astype(np.int64), test.astype(np.int64), forget_idx.astype(np.int64), remain.astype(np.int64))
    check_splits(splits, n)
    return splits


def train_test_split(n: int, *, seed: int, test_start: int | None = None,
                     test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices of ``n`` samples: the official split from ``test_start``
    on, else a seeded random ``test_fraction`` as test (whatever the forget settings)."""
    if test_start is not None:
        return np.arange(test_start), np.arange(test_start, n)
    order = np.random.default_rng([seed, _TEST_STREAM]).permutation(n)
    n_test = int(round(test_fraction * n))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def memorized_pool(scores: np.ndarray, level: str, pool: float) -> np.ndarray:
    """Positions (into ``scores``) of the ``pool`` fraction with the highest scores (``high``),
    the lowest (``low``) or the middle ones (``medium``); ties broken by position."""
    size = max(1, int(round(pool * len(scores))))
    order = np.argsort(scores, kind="stable")
    start = {"low": 0, "medium": (len(scores) - size) // 2, "high": len(scores) - size}[level]
    return np.sort(order[start:start + size])


def _memorized_indices(train: np.ndarray, forget: ForgetConfig, seed: int, scores: np.ndarray | None) -> np.ndarray:
    """A seeded random subset of the memorisation pool (:func:`memorized_pool`) of train."""
    if scores is None or len(scores) != len(train):
        raise DataError("data.forget.mode = memorized needs the memorisation score of every train sample "
                        f"(prepare computes them; got {0 if scores is None else len(scores)} for {len(train)})")
    pool = memorized_pool(np.asarray(scores), forget.level, forget.pool)
    count = _forget_count(forget, len(train))
    if not 0 < count <= len(pool) or count >= len(train):
        key, value = ("count", forget.count) if forget.count is not None else ("fraction", forget.fraction)
        raise ConfigError(f"params.yaml: data.forget.{key} = {value}: gives {count} forget samples; the {forget.level} "
                          f"pool (data.forget.pool = {forget.pool:g} of train) has {len(pool)}: lower it or raise "
                          f"pool")
    chosen = np.random.default_rng([seed, _FORGET_STREAM]).choice(len(pool), size=count, replace=False)
    return np.sort(train[pool[chosen]])


def _forget_count(forget: ForgetConfig, n_train: int) -> int:
    """The forget set's size: ``count``, else ``fraction`` of train."""
    return forget.count if forget.count is not None else int(round(forget.fraction * n_train))


def _forget_indices(labels: np.ndarray, train: np.ndarray, forget: ForgetConfig, seed: int) -> np.ndarray:
    if forget.mode == "class":
        present = set(np.unique(labels).tolist())
        missing = [c for c in forget.classes if c not in present]
        if missing:
            raise ConfigError(f"params.yaml: data.forget.classes = {forget.classes}: class {missing[0]} is not in "
                              f"the dataset (labels are {min(present)}..{max(present)})")
        if len(forget.classes) == len(present):
            raise ConfigError(f"params.yaml: data.forget.classes = {forget.classes}: forgetting every class leaves nothing to remain")
        return train[np.isin(labels[train], forget.classes)]
    count = _forget_count(forget, len(train))
    if not 0 < count < len(train):
        key, value = ("count", forget.count) if forget.count is not None else ("fraction", forget.fraction)
        raise ConfigError(f"params.yaml: data.forget.{key} = {value}: gives {count} forget samples; "
                          f"must be between 1 and {len(train) - 1} (train has {len(train)})")
    chosen = np.random.default_rng([seed, _FORGET_STREAM]).choice(len(train), size=count, replace=False)
    return np.sort(train[chosen])


def check_splits(splits: Splits, n: int) -> None:
    """Raise :class:`DataError` unless the splits are disjoint and cover what they should."""
    parts = splits.as_dict()
    for name, idx in parts.items():
        if idx.ndim != 1 or (len(idx) and (idx.min() < 0 or idx.max() >= n)):
            raise DataError(f"split {name}: indices out of range for a dataset of {n} samples")
        if len(np.unique(idx)) != len(idx):
            raise DataError(f"split {name}: repeated indices")
    if np.intersect1d(splits.train, splits.test).size:
        raise DataError("splits: train and test overlap")
    if np.setdiff1d(splits.forget, splits.train).size:
        raise DataError("splits: forget is not inside train")
    if np.intersect1d(splits.forget, splits.remain).size:
        raise DataError("splits: forget and remain overlap")
    if len(splits.forget) + len(splits.remain) != len(splits.train):
        raise DataError("splits: forget and remain do not cover train")
    if len(splits.forget) == 0 or len(splits.remain) == 0 or len(splits.test) == 0:
        raise DataError("splits: forget, remain and test must all be non-empty")


def class_splits(labels: np.ndarray, train: np.ndarray, test: np.ndarray, forget_class: int) -> dict[str, np.ndarray]:
    """The class track's splits of an existing train / test split: ``forget`` (train samples
    of ``forget_class``), ``remain`` (the other train samples), ``test`` (test samples of the
    other classes) and ``forget_test`` (test samples of ``forget_class``, never trained on)."""
    labels = np.asarray(labels)
    present = np.unique(labels)
    if forget_class not in present:
        raise ConfigError(f"params.yaml: class_track.forget_class = {forget_class}: the dataset has no such class "
                          f"(labels are {present.min()}..{present.max()})")
    if len(present) < 2:
        raise ConfigError(f"params.yaml: class_track.forget_class = {forget_class}: it is the dataset's only class; "
                          f"forgetting every class leaves nothing to remain")
    in_train, in_test = labels[train] == forget_class, labels[test] == forget_class
    parts = {"forget": train[in_train], "remain": train[~in_train], "test": test[~in_test],
             "forget_test": test[in_test]}
    empty = [name for name, idx in parts.items() if not len(idx)]
    if empty:
        raise DataError(f"class {forget_class}: the class split {empty[0]!r} is empty")
    return {name: idx.astype(np.int64) for name, idx in parts.items()}
