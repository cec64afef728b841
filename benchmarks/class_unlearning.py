"""Class unlearning: TRW and the baselines against models retrained without the class,
averaged over seeds (the layout of the TRW paper's tables).

For every seed: a seeded train / test split, an original model trained on train,
``--retrain-seeds`` models retrained without class ``--forget-class`` (the gold standard
and MIA-NN's reference), then every class-track method of ``unlearn.unlearning.METHODS``
from a copy of the original with the settings of ``params.yaml``'s ``unlearn_class``
(``--set method.key=value`` overrides one). Each model is measured by
``unlearn.evaluation.class_track.class_metrics``, as the pipeline's ``evaluate_class``
does; retrain's row is its seeds measured against each other. Columns: forget and test
accuracy (percent), MIA-NN AUC and its gap to retrain, TV distance to the retrained
models' mean output on the class, percent of the class sent to its nearest class n(f),
Avg Gap (forget / retain / test accuracy and MIA-NN) and runtime relative to one
retraining; mean +- std over seeds.

    python benchmarks/class_unlearning.py --dataset digits --epochs 40 --seeds 0,1,2
    python benchmarks/class_unlearning.py --dataset cifar10 --train 2000 --test 1000 --epochs 40 --batch-size 32
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from amun import add_training_arguments, cell, fit, load, settings_from  # benchmarks/amun.py

from unlearn.config import ForgetConfig, TrainConfig, load_params
from unlearn.data import class_splits, make_splits
from unlearn.evaluation import avg_gap, predict
from unlearn.evaluation.class_track import class_metrics, forget_inputs
from unlearn.evaluation.gap import CLASS_KEYS
from unlearn.evaluation.mia_nn import nearest_class
from unlearn.training import to_float
from unlearn.unlearning import METHODS, ForgetTask
from unlearn.unlearning.trw import class_similarity, final_linear

CLASS_TRACK = [name for name in METHODS.names() if "class" in METHODS.get(name).tracks]
COLUMNS = ("forget_acc", "test_acc", "mia_nn", "mia_nn_gap", "tv_to_retrain", "to_nearest", "avg_gap",
           "runtime_vs_retrain")


def one_seed(images, labels, test_start, seed, args, settings, mia_nn) -> dict:
    split = make_splits(labels.numpy(), seed=seed, forget=ForgetConfig(fraction=0.1), test_start=test_start)
    parts = class_splits(labels.numpy(), split.train, split.test, args.forget_class)
    pixels = to_float(images[torch.as_tensor(split.train)])
    mean, std = pixels.mean(dim=(0, 2, 3)).tolist(), pixels.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    num_classes = int(labels.max()) + 1
    recipe = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, augment=args.augment)
    stats = (mean, std, num_classes)
    original, _ = fit(images, labels, torch.as_tensor(split.train), recipe, args, seed, *stats)
    retrained, seconds = [], []
    for k in range(args.retrain_seeds):
        model, took = fit(images, labels, torch.as_tensor(parts["remain"]), recipe, args, 1000 * seed + k, *stats)
        retrained.append(predict(model, images))
        seconds.append(took)
    inputs = forget_inputs(parts)
    probs = [torch.softmax(logits[inputs].double(), 1).numpy() for logits in retrained]

    def measure(logits, reference_probs):
        return class_metrics(logits, labels, parts, reference_probs, args.forget_class, mia_nn, seed)

    per_seed = [measure(logits, probs[:k] + probs[k + 1:]) for k, logits in enumerate(retrained)]
    results = {"retrain": {key: float(np.mean([m[key] for m in per_seed])) for key in per_seed[0]},
               "original": measure(predict(original, images), probs)}
    results["retrain"]["runtime_vs_retrain"] = 1.0
    trw = settings["trw"]
    classes = {"nearest": nearest_class(probs, args.forget_class), "head_similar": int(class_similarity(
        final_linear(original).weight, args.forget_class, pca_dim=trw.pca_dim, temperature=trw.temperature).argmax())}
    task = ForgetTask(images, labels, torch.as_tensor(parts["forget"]), torch.as_tensor(parts["remain"]), num_classes,
                      holdout=torch.as_tensor(split.test))
    retrain_s = statistics.mean(seconds)
    runs = [(name, name, settings[name]) for name in args.methods]
    runs += [(f"trw beta={beta:g}", "trw", settings["trw"].model_copy(update={"beta": beta}))
             for beta in args.trw_betas]
    for row, name, cfg in runs:
        model = copy.deepcopy(original)
        start = time.perf_counter()
        METHODS.get(name).run(model, task, cfg, torch.Generator().manual_seed(seed))
        took = time.perf_counter() - start
        results[row] = {**measure(predict(model, images), probs), "runtime_vs_retrain": took / retrain_s}
    for metrics in results.values():
        metrics["mia_nn_gap"] = abs(metrics["mia_nn"] - results["retrain"]["mia_nn"])
        metrics["avg_gap"] = avg_gap(metrics, results["retrain"], CLASS_KEYS)
    return {**results, "classes": classes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser)
    parser.add_argument("--forget-class", type=int, default=1)
    parser.add_argument("--retrain-seeds", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(CLASS_TRACK))
    parser.add_argument("--set", action="append", default=[], help="override, e.g. --set trw.beta=0")
    parser.add_argument("--trw-betas", default="", help="extra TRW rows at these betas, e.g. 0,2")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write every seed's results here")
    args = parser.parse_args()
    args.methods = args.methods.split(",") if args.methods else []
    args.trw_betas = [float(b) for b in args.trw_betas.split(",") if b]
    torch.set_num_threads(args.threads)
    settings = settings_from(args, "unlearn_class", CLASS_TRACK)
    mia_nn = load_params(args.params).mia_nn
    images, labels, test_start = load(args)
    per_seed = []
    for seed in map(int, args.seeds.split(",")):
        start = time.perf_counter()
        per_seed.append(one_seed(images, labels, test_start, seed, args, settings, mia_nn))
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "seeds": per_seed}, indent=1, default=str))
        classes = per_seed[-1]["classes"]
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s; retrained models send the class mostly to "
              f"{classes['nearest']}, the original's head ranks {classes['head_similar']} most similar", flush=True)
    print(f"\n{args.dataset}: {len(labels)} images, forget class {args.forget_class}, {args.model}, {args.epochs} "
          f"epochs, {args.retrain_seeds} retrained models per seed, MIA-NN {mia_nn.features} "
          f"(k {mia_nn.neighbours}); {len(per_seed)} seeds\n")
    print("| model | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name in ["retrain", "original", *args.methods, *(f"trw beta={b:g}" for b in args.trw_betas)]:
        cells = [cell([s[name][c] for s in per_seed], 3 if c == "tv_to_retrain" else 2) if c in per_seed[0][name]
                 else "-" for c in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    prior = [n for n in args.methods if n != "trw"]
    if "trw" in args.methods and prior:
        gaps = {n: statistics.mean(s[n]["mia_nn_gap"] for s in per_seed) for n in args.methods}
        best = min(prior, key=gaps.get)
        change = f" ({100 * (gaps['trw'] / gaps[best] - 1):+.0f}%)" if gaps[best] else ""
        print(f"\nmean MIA-NN gap: trw {gaps['trw']:.2f}, best prior method {best} {gaps[best]:.2f}{change}")


if __name__ == "__main__":
    main()
