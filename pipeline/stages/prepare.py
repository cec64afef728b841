"""Stage ``prepare``: decode the dataset once into uint8 tensors and write the seeded splits
(as index files, and as one CSV for users), and the deletion requests (``data.forget`` first,
then ``requests.files``) with the samples they name."""

from __future__ import annotations

import logging

from unlearn.config import Params
from unlearn.io import file_sha256, save_indices, save_tensors, write_json, write_text
from unlearn_pipeline.common import (CACHE_DIR, IMAGES, MEMORIZATION_SUMMARY, META, REQUESTS, SPLITS, SPLITS_CSV,
                                     csv_text, split_path, stage_device)
from unlearn_pipeline.stages import stage
from unlearn_pipeline.tracking import TrackedRun

log = logging.getLogger(__name__)


# model .. execution.precision: the memorisation models' recipe (data.forget.mode: memorized only)
@stage("prepare", ("seed", "data", "requests.files", "model", "train", "lipschitz", "memorization",
                   "execution.precision"))
def prepare(params: Params, run: TrackedRun) -> None:
    """Decode the dataset to uint8 tensors and write the seeded splits as index files; with
    ``data.forget.mode: memorized``, score train's samples first (:mod:`unlearn_pipeline.memorization`)."""
    import torch

    from unlearn.data import load_dataset, make_splits, read_requests, train_test_split

    cfg = params.data
    data = load_dataset(cfg.dataset, root=cfg.root, path=cfg.path, download=cfg.download, cache_dir=CACHE_DIR)
    train, _ = train_test_split(len(data.labels), seed=params.seed, test_start=data.test_start,
                                test_fraction=cfg.test_fraction)  # make_splits' own train split
    mean, std = channel_stats(data.images[torch.as_tensor(train)])
    scores = None
    if cfg.forget.mode == "memorized":
        from unlearn_pipeline.memorization import train_scores

        scores = train_scores(params, data.images, data.labels, len(data.classes), train, {"mean": mean, "std": std},
                              stage_device(params))
    splits = make_splits(data.labels.numpy(), seed=params.seed, forget=cfg.forget, test_start=data.test_start,
                         test_fraction=cfg.test_fraction, names=data.names, memorization=scores)
    write_json(MEMORIZATION_SUMMARY, memorization_summary(cfg.forget, splits, scores))
    later = read_requests(params.requests.files, first=splits.forget, n_samples=len(data.labels),
                          train_size=len(splits.train), test=splits.test, names=data.names)
    save_tensors(IMAGES, {"images": data.images, "labels": data.labels})
    for name, idx in splits.as_dict().items():
        save_indices(split_path(name), idx)
    meta = {
        "dataset": cfg.dataset,
        "classes": list(data.classes),
        "test_start": data.test_start,
        "shape": list(data.images.shape[1:]),
        "mean": mean,
        "std": std,
        "counts": {name: int(len(idx)) for name, idx in splits.as_dict().items()},
        "sha256": {path.name: file_sha256(path) for path in [IMAGES, *map(split_path, SPLITS)]},
    }
    write_json(META, meta)
    write_text(SPLITS_CSV, splits_csv(splits.as_dict(), data.labels.tolist(), data.names))
    first = cfg.forget.file or f"data.forget ({cfg.forget.mode})"
    write_json(REQUESTS, [_request(source, idx.tolist(), data.names) for source, idx in
                          [(first, splits.forget), *((r.path, r.indices) for r in later)]])
    log.info("prepared %s: %s", cfg.dataset, meta["counts"])
    run.log_metrics({f"n_{name}": count for name, count in meta["counts"].items()})
    run.set_tags({"data.sha256": meta["sha256"]["images.pt"]})
    for path in [META, REQUESTS, SPLITS_CSV, *map(split_path, SPLITS)]:
        run.log_artifact(path, "splits")


def memorization_summary(forget, splits, scores) -> dict:
    """With scores: each forget sample's score, and the quantiles of the forget set's and of all
    of train's (what the report compares); else ``{"scored": false}``."""
    if scores is None:
        return {"scored": False}
    import numpy as np

    by_index = dict(zip(splits.train.tolist(), scores.tolist()))
    chosen = np.array([by_index[i] for i in splits.forget.tolist()])
    return {"scored": True, "level": forget.level, "pool": forget.pool,
            "quantiles": {"train": _quantiles(scores), "forget": _quantiles(chosen)},
            "forget": {str(i): round(by_index[i], 6) for i in splits.forget.tolist()}}


def _quantiles(values) -> dict[str, float]:
    import numpy as np

    points = dict(zip(("min", "q25", "median", "q75", "max"), np.quantile(values, [0, 0.25, 0.5, 0.75, 1]).tolist()))
    return {key: round(value, 4) for key, value in {**points, "mean": float(np.mean(values))}.items()}


def splits_csv(splits: dict, labels: list[int], names) -> str:
    """One row per sample: its index into the dataset (the ids that forget lists use), label,
    split (``remain`` and ``forget`` make up train; ``test``; ``unused``) and, for an image
    folder, its file. Train a model of your own on the rows whose split is not ``test``."""
    split = ["unused"] * len(labels)
    for name in ("test", "remain", "forget"):
        for i in splits[name].tolist():
            split[i] = name
    header = ["index", "label", "split", *(["file"] if names is not None else [])]
    return csv_text(header, [[str(i), str(label), split[i], *([names[i]] if names is not None else [])]
                             for i, label in enumerate(labels)])


def _request(source: str, indices: list[int], names) -> dict:
    """One deletion request as the audit reports it: where it came from and the samples it names."""
    return {"source": source, "indices": indices, "names": None if names is None else [names[i] for i in indices]}


def channel_stats(images) -> tuple[list[float], list[float]]:
    """Per-channel mean and (sample) standard deviation, at least 1e-3, of uint8 ``images``
    (N, C, H, W) scaled to [0, 1]. The sums are exact integers, so the result is the same
    whatever the thread count or CPU (a float reduction's rounding depends on both)."""
    import math

    import torch

    sums = torch.zeros(images.shape[1], dtype=torch.int64)
    squares = torch.zeros(images.shape[1], dtype=torch.int64)
    for chunk in images.split(4096):  # int64 copies of a few thousand images at a time
        pixels = chunk.to(torch.int64)
        sums += pixels.sum(dim=(0, 2, 3))
        squares += pixels.square().sum(dim=(0, 2, 3))
    count = images.numel() // images.shape[1]
    sums, squares = sums.tolist(), squares.tolist()
    mean = [total / count / 255 for total in sums]
    std = [max(math.sqrt((sq - total * total / count) / (count - 1)) / 255, 1e-3) for total, sq in zip(sums, squares)]
    return mean, std
