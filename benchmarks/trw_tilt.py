"""TRW's tilt strength: TV to retrain and MIA-NN gap against lambda, for several classes.

For every seed: a seeded train / test split and an original model trained on train; for
every class of ``--classes``: ``--retrain-seeds`` models retrained without it (the gold
standard and MIA-NN's reference), then TRW from a copy of the original (its recipe from
``params.yaml``'s ``unlearn_class.trw``, ``--set trw.key=value`` overrides one) with
these targets:

- ``solved``: ``target: maxent, strength: null``, lambda solved from the constraint
  estimated on the class's held-out (test) inputs; the solved lambda is recorded;
- ``lambda=<s>``: ``target: maxent`` with the fixed strengths of ``--strengths``
  (0: plain renormalisation);
- ``softmax``: ``target: softmax, beta: 10, temperature: 0.1`` (the earlier default).

Each model is measured by ``unlearn.evaluation.class_track.class_metrics`` against the
retrained models, as ``benchmarks/class_unlearning.py`` does (retrain's row: its seeds
against each other); ``mia_nn_gap = |mia_nn - retrain's mia_nn|``. The table shows, per
class and over classes, ``TV to retrain / MIA-NN gap`` (means over seeds) and the solved
lambda per class.

    python benchmarks/trw_tilt.py --dataset digits --epochs 20 --batch-size 64 --classes 0,2,3,5,8 \
        --seeds 0,1,2 --strengths 0,2,5,10,20 --json /tmp/trw_digits.json
    python benchmarks/trw_tilt.py --dataset digits --epochs 20 --batch-size 64 --classes 1 \
        --seeds 0,1,2 --strengths 0,2,5,10,20 --json /tmp/trw_digits_class1.json
    python benchmarks/trw_tilt.py --dataset cifar10 --train 2000 --test 1000 --epochs 30 --batch-size 32 \
        --classes 0,1,9 --seeds 0,1,2 --strengths 0,5,20 --json /tmp/trw_cifar10.json
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
from amun import add_training_arguments, fit, load, settings_from  # benchmarks/amun.py

from unlearn.config import ForgetConfig, TrainConfig, TrwConfig, load_params
from unlearn.data import class_splits, make_splits
from unlearn.evaluation import predict
from unlearn.evaluation.class_track import class_metrics, forget_inputs
from unlearn.training import to_float
from unlearn.unlearning import METHODS, ForgetTask
from unlearn.unlearning.trw import targets_for


def variants(trw: TrwConfig, strengths: list[float]) -> dict[str, TrwConfig]:
    """The TRW rows: solved lambda, each fixed lambda, and the softmax target."""
    rows = {"solved": trw.model_copy(update={"target": "maxent", "strength": None})}
    rows.update({f"lambda={s:g}": trw.model_copy(update={"target": "maxent", "strength": s}) for s in strengths})
    rows["softmax"] = trw.model_copy(update={"target": "softmax", "beta": 10.0, "temperature": 0.1})
    return rows


def one_class(images, labels, split, original, forget_class, seed, args, rows, mia_nn, stats, recipe) -> dict:
    """Retrain, original and every TRW row's class metrics for ``forget_class``."""
    parts = class_splits(labels.numpy(), split.train, split.test, forget_class)
    retrained = [predict(fit(images, labels, torch.as_tensor(parts["remain"]), recipe, args, 1000 * seed + k,
                             *stats)[0], images) for k in range(args.retrain_seeds)]
    inputs = forget_inputs(parts)
    probs = [torch.softmax(logits[inputs].double(), 1).numpy() for logits in retrained]

    def measure(logits, reference_probs):
        return class_metrics(logits, labels, parts, reference_probs, forget_class, mia_nn, seed)

    per_seed = [measure(logits, probs[:k] + probs[k + 1:]) for k, logits in enumerate(retrained)]
    results = {"retrain": {key: float(np.mean([m[key] for m in per_seed])) for key in per_seed[0]},
               "original": measure(predict(original, images), probs)}
    task = ForgetTask(images, labels, torch.as_tensor(parts["forget"]), torch.as_tensor(parts["remain"]),
                      stats[2], holdout=torch.as_tensor(split.test))
    for row, cfg in rows.items():
        model = copy.deepcopy(original)
        METHODS.get("trw").run(model, task, cfg, torch.Generator().manual_seed(seed))
        results[row] = measure(predict(model, images), probs)
    results["solved"]["lambda"] = targets_for(original, task, rows["solved"])[1]
    for metrics in results.values():
        metrics["mia_nn_gap"] = abs(metrics["mia_nn"] - results["retrain"]["mia_nn"])
    return results


def one_seed(images, labels, test_start, seed, args, rows, mia_nn) -> dict[str, dict]:
    """Per forget class (a string key), :func:`one_class`'s results for this seed's split."""
    split = make_splits(labels.numpy(), seed=seed, forget=ForgetConfig(fraction=0.1), test_start=test_start)
    pixels = to_float(images[torch.as_tensor(split.train)])
    stats = (pixels.mean(dim=(0, 2, 3)).tolist(), pixels.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist(),
             int(labels.max()) + 1)
    recipe = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, augment=args.augment)
    original, _ = fit(images, labels, torch.as_tensor(split.train), recipe, args, seed, *stats)
    return {str(c): one_class(images, labels, split, original, c, seed, args, rows, mia_nn, stats, recipe)
            for c in args.classes}


def print_table(per_seed: list[dict], classes: list[int], rows: list[str]) -> None:
    """Rows: models; columns: per class and their mean, ``TV / MIA-NN gap`` averaged over seeds."""
    def mean(row, c, key):
        return statistics.mean(s[str(c)][row][key] for s in per_seed)

    print("| model | " + " | ".join(f"class {c}" for c in classes) + " | mean |")
    print("|---" * (len(classes) + 2) + "|")
    for row in ["retrain", "original", *rows]:
        tv = [mean(row, c, "tv_to_retrain") for c in classes]
        gap = [mean(row, c, "mia_nn_gap") for c in classes]
        cells = [f"{t:.3f} / {g:.1f}" for t, g in zip(tv, gap)]
        print(f"| {row} | " + " | ".join(cells) + f" | {statistics.mean(tv):.3f} / {statistics.mean(gap):.1f} |")
    lambdas = [[s[str(c)]["solved"]["lambda"] for s in per_seed] for c in classes]
    print("| solved lambda | " + " | ".join(" ".join(f"{v:.2f}" for v in ls) for ls in lambdas)
          + f" | {statistics.mean(v for ls in lambdas for v in ls):.2f} |")
    print("\nretrain's MIA-NN AUC: " + ", ".join(f"class {c} {mean('retrain', c, 'mia_nn'):.1f}" for c in classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser)
    parser.add_argument("--classes", default="0,2,3,5,8", help="forget classes, one at a time")
    parser.add_argument("--strengths", default="0,2,5,10,20", help="fixed tilt strengths lambda")
    parser.add_argument("--retrain-seeds", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], help="override, e.g. --set trw.epochs=10")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write every seed's results here")
    args = parser.parse_args()
    args.classes = [int(c) for c in args.classes.split(",")]
    torch.set_num_threads(args.threads)
    rows = variants(settings_from(args, "unlearn_class", ["trw"])["trw"],
                    [float(s) for s in args.strengths.split(",") if s])
    mia_nn = load_params(args.params).mia_nn
    images, labels, test_start = load(args)
    per_seed, begin = [], time.perf_counter()
    for seed in map(int, args.seeds.split(",")):
        start = time.perf_counter()
        per_seed.append(one_seed(images, labels, test_start, seed, args, rows, mia_nn))
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "seeds": per_seed}, indent=1, default=str))
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\n{args.dataset}: {len(labels)} images, {args.model}, {args.epochs} epochs, batch {args.batch_size}, "
          f"lr {args.lr}; {args.retrain_seeds} retrained models per class and seed, {len(per_seed)} seeds, "
          f"{time.perf_counter() - begin:.0f} s. TV to retrain / MIA-NN gap (AUC points), means over seeds; "
          f"solved lambda per seed. TRW: epochs {rows['solved'].epochs}, lr {rows['solved'].lr}, batch "
          f"{rows['solved'].batch_size}, use_remain {rows['solved'].use_remain}\n")
    print_table(per_seed, args.classes, list(rows))


if __name__ == "__main__":
    main()
