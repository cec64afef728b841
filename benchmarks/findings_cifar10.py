"""F1 and F4 in a CIFAR-10 regime on 2 CPU cores: the seed study's protocol, RMIA included.

For every seed s, one cell of the study (:func:`unlearn.protocol.prepare_cell`: model
seed s, forget-set seed s, 10% of train forgotten at random): ``--references`` reference
models, each trained on a seeded random half of all images (train and test) with the
original's recipe, then the original and retrained models, D_A, and every method of
``--methods`` with its ``unlearn`` section of ``--params`` (the pipeline's settings);
every model is scored as in the study (accuracies, RMIA and LiRA with the cell's
references, MIA-efficacy, the loss attack) and its Avg Gap to the cell's retrained
model. The table gives mean ± 95% interval over seeds; F1 and F4 are judged by the
rules of :mod:`unlearn.findings`. The first lines state the regime: the original's
train and test accuracy, the retrained model's forget accuracy and seconds per model.

Data: CIFAR-10 from ``--cifar`` (default ``../shared/data/cifar10-jpg.tar.gz``),
a fixed random subset of ``--train`` / ``--test`` images. ``--json`` writes every
seed's numbers after each seed (a long run keeps what it finished).

    python benchmarks/findings_cifar10.py --train 2000 --test 1000 --epochs 60 --batch-size 32 --references 4 \
        --seeds 0,1,2 --json cifar.json
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from amun import load  # the same fixed CIFAR-10 subset as the AMUN benchmark
from unlearn.config import load_params
from unlearn.evaluation import accuracy, predict
from unlearn.evaluation.suite import keep_matrix
from unlearn.findings import interval, seed_study_findings
from unlearn.models import create_model
from unlearn.protocol import References, gaps, normalisation, prepare_cell, run_method
from unlearn.training import train_
from unlearn.unlearning import METHODS

RANDOM_TRACK = [name for name in METHODS.names() if "random" in METHODS.get(name).tracks]
COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia_rmia_auc", "avg_gap", "mia_svc", "avg_gap_svc",
           "mia_loss_auc", "runtime_vs_retrain")


def study_params(args):
    """The pipeline's params (methods, D_A, attacks) with this regime's data, model and recipe."""
    params = load_params(args.params)
    overrides = {"model": params.model.model_copy(update={"name": "small_cnn", "width": args.width,
                                                          "batch_norm": True}),
                 "train": params.train.model_copy(update={"epochs": args.epochs, "batch_size": args.batch_size,
                                                          "lr": args.lr, "augment": False}),
                 "lipschitz": params.lipschitz.model_copy(update={"method": "none"}),
                 "data": params.data.model_copy(update={"dataset": "cifar10"})}
    return params.model_copy(update=overrides)


def references(images, labels, params, count: int, seed: int) -> tuple[References, float]:
    """``count`` reference models on seeded random halves of all images, with the original's recipe."""
    keep = keep_matrix(count, len(labels), (seed, seed, zlib.crc32(b"cifar10")))
    stats, logits, start = normalisation(images, np.arange(len(labels))), [], time.perf_counter()
    for k in range(count):
        model = create_model("small_cnn", in_channels=images.shape[1], num_classes=int(labels.max()) + 1,
                             seed=100_000 + 100 * seed + k, width=params.model.width, **stats)
        idx = torch.as_tensor(np.flatnonzero(keep[k]))
        train_(model, images[idx], labels[idx], params.train, generator=torch.Generator().manual_seed(k))
        logits.append(predict(model.eval(), images))
    return References(keep, torch.stack(logits)), (time.perf_counter() - start) / count


def one_seed(images, labels, test_start, params, args, seed: int) -> tuple[dict, dict]:
    refs, reference_s = references(images, labels, params, args.references, seed)
    start = time.perf_counter()
    cell = prepare_cell(images, labels, test_start, params, seed, seed, references=refs)
    train = torch.as_tensor(cell.splits["train"])
    regime = {"original_train_acc": accuracy(predict(cell.original, images[train]), labels[train]),
              "original_test_acc": cell.metrics["original"]["test_acc"],
              "retrain_forget_acc": cell.metrics["retrain"]["forget_acc"], "retrain_s": cell.retrain_s,
              "reference_s": reference_s, "cell_s": time.perf_counter() - start}
    retrain = cell.metrics["retrain"]
    results = {"retrain": {**retrain, "avg_gap": 0.0, "avg_gap_svc": 0.0, "runtime_vs_retrain": 1.0},
               "original": {**cell.metrics["original"], **gaps(cell.metrics["original"], retrain)}}
    for name in args.methods:
        results[name] = run_method(cell, name, getattr(params.unlearn, name), seed)
    return results, regime


def report(per_seed: dict[int, dict], regimes: dict[int, dict]) -> None:
    seeds = list(per_seed)
    for key in regimes[seeds[0]]:
        print(f"# {key}: " + ", ".join(f"{regimes[s][key]:.2f}" for s in seeds))
    models = list(per_seed[seeds[0]])
    print("| model | " + " | ".join(COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS))
    for name in models:
        cells = []
        for key in COLUMNS:
            values = [per_seed[s][name].get(key) for s in seeds]
            cells.append("-" if None in values else f"{interval(values)['mean']:.2f} ± {interval(values)['ci95']:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    findings = seed_study_findings({name: [per_seed[s][name] for s in seeds] for name in models})
    for key, finding in findings.items():
        print(f"\n{key} ({finding['holds']}): {finding['claim']}. {finding['why']}")
        for name, d in finding["evidence"]["differences"].items():
            print(f"  {name}: {d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar", default="../shared/data/cifar10-jpg.tar.gz")
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--width", type=int, default=32, help="small_cnn width")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--references", type=int, default=4)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(RANDOM_TRACK))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write every seed's results here")
    args = parser.parse_args()
    args.dataset = "cifar10"
    args.methods = args.methods.split(",")
    torch.set_num_threads(args.threads)
    images, labels, test_start = load(args)
    params = study_params(args)
    per_seed, regimes = {}, {}
    for seed in map(int, args.seeds.split(",")):
        per_seed[seed], regimes[seed] = one_seed(images, labels, test_start, params, args, seed)
        print(f"# seed {seed} done: {json.dumps({k: round(v, 2) for k, v in regimes[seed].items()})}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "regimes": regimes, "results": per_seed},
                                                  indent=1, default=float))
    report(per_seed, regimes)


if __name__ == "__main__":
    main()
