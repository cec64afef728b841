"""Cost of the attack suite: training the reference models with 1 vs 2 local workers, and
scoring one model once the references exist.

Runs in a temporary directory holding links to the project's ``data/prepared`` and
``params.yaml`` (run ``dvc repro prepare`` first), with MLflow in a temporary sqlite
store, so the workspace's outputs are not touched. The same K reference jobs (the
``references`` stage's own job function, ``--epochs`` each) run with ``workers=1``
(in-process, 2 threads) and ``workers=2`` (two spawned processes, one thread each);
then the scoring step of stage ``evaluate`` for one model (one forward pass, the classic attacks,
RMIA and LiRA with AUC / TPR) is timed ``--repeats`` times on a model of the project's
architecture (its cost does not depend on the weights).

    python benchmarks/mia.py [--K 4] [--epochs 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--K", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path.cwd()
    if not (root / "data" / "prepared" / "meta.json").exists():
        raise SystemExit("error: data/prepared/meta.json not found; run `dvc repro prepare` first")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        Path("data").mkdir()
        Path("data/prepared").symlink_to(root / "data" / "prepared")
        Path("params.yaml").write_text((root / "params.yaml").read_text() + "\n")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        _set_references(args.K, args.epochs)
        timings = {workers: _train_references(args.K, workers) for workers in (1, 2)}
        score = _score(args.repeats)
    print(f"\nreference models: K = {args.K}, {args.epochs} epochs each (digits default model)\n")
    print("| workers | wall-clock (s) | per model (s) | speed-up |")
    print("|---:|---:|---:|---:|")
    for workers, seconds in timings.items():
        print(f"| {workers} | {seconds:.1f} | {seconds / args.K:.2f} | {timings[1] / seconds:.2f} |")
    print(f"\nscoring one model (forward pass + SVC, loss, RMIA, LiRA): median {statistics.median(score):.2f} s "
          f"over {len(score)} (min {min(score):.2f}, max {max(score):.2f})")


def _set_references(k: int, epochs: int) -> None:
    import yaml

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["references"] = {"K": k, "epochs": epochs}
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _train_references(k: int, workers: int) -> float:
    import numpy as np

    from unlearn.evaluation.suite import keep_matrix
    from unlearn.execution import Job, run_jobs
    from unlearn.io import atomic_path
    from unlearn_pipeline.common import KEEP, load_prepared
    from unlearn_pipeline.stages.references import train_reference

    data = load_prepared()
    KEEP.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(KEEP) as path, open(path, "wb") as handle:
        np.save(handle, keep_matrix(k, len(data.labels), 0), allow_pickle=False)
    torch.set_num_threads(1 if workers > 1 else 2)
    start = time.perf_counter()
    run_jobs([Job(train_reference, {"k": i, "params_file": "params.yaml", "parent_run_id": None})
              for i in range(k)], workers=workers)
    return time.perf_counter() - start


def _score(repeats: int) -> list[float]:
    from unlearn_pipeline.common import load_prepared, load_references
    from unlearn_pipeline.model_store import build_model
    from unlearn.config import load_params
    from unlearn.evaluation import predict, split_metrics
    from unlearn.evaluation.suite import attack_metrics, attack_scores

    params = load_params()
    data = load_prepared()
    keep, reference_logits = load_references(len(data.labels))
    model = build_model(params, data.meta)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        logits = predict(model, data.images)
        scores = attack_scores(logits, reference_logits, keep, data.labels, data.splits["test"], params.mia, 0)
        split_metrics(logits, data.labels, data.splits)
        attack_metrics(scores, data.splits, params.mia, 0)
        seconds.append(time.perf_counter() - start)
    return seconds


if __name__ == "__main__":
    main()
