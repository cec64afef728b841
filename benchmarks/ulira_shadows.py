"""How many U-LiRA shadow models the class track needs to expose the original model (F6's positive control).

For every seed: a seeded train / test split of ``digits`` and the target original model
(every train sample, weight seed = the seed); for every class of ``--classes``: the class
split (forget: the class's train samples, remain: the others, never seen: the class's test
samples), a target retrained model (remain only, weight seed ``1000 * seed + 1``) and U-LiRA's
candidates (:func:`unlearn.evaluation.ulira.candidates`). Then, for every S of ``--shadows``,
on its own keep matrix ``shadow_keep(S, M, (seed, class, S))``: S ``original`` shadows (remain
+ their half of the candidates) and S ``retrain`` shadows (remain only), each with its own
weight seed (distinct from the targets' and from every other shadow's). Every model follows
``params.yaml``'s ``train`` recipe (``--epochs`` overrides its epochs) and ``model`` section.

U-LiRA (:func:`ulira_scores`, :func:`ulira_metrics`): the original target against the
original shadows, the retrained target against the retrain shadows. The variance follows
the pipeline's rule (``ulira.fixed_variance: null``): pooled below 16 shadows, per candidate
from 16 on; from 16 on a second row also gives the pooled one (same shadows). The table:
per S, both AUCs (mean ± 95% Student-t half-width over the seed x class cells,
:func:`unlearn.findings.interval`), their paired difference (original - retrain) with its
95% interval, whether that interval lies above 0 (the control passes), and the wall-clock of
that S's shadows over all cells. ``--json`` writes every cell's numbers.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/ulira_shadows.py --seeds 0 --classes 1 --shadows 4 --epochs 2
    OMP_NUM_THREADS=2 python benchmarks/ulira_shadows.py --seeds 0,1,2 --classes 1,7 --shadows 4,8,16,32 \
        --json /tmp/ulira_shadows.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from amun import fit, load  # benchmarks/amun.py

from unlearn.config import ForgetConfig, load_params
from unlearn.data import class_splits, make_splits
from unlearn.evaluation import predict
from unlearn.evaluation.ulira import candidates, shadow_keep, ulira_metrics, ulira_scores
from unlearn.findings import interval
from unlearn.training import to_float

KINDS = ("original", "retrain")


def shadow_seed(seed: int, forget_class: int, kind: str, shadows: int, s: int) -> int:
    """Weight-init and batch-order seed of shadow ``s`` of the ``shadows``-model set (>= 10**9:
    never a target's seed, which is ``seed`` or ``1000 * seed + 1``)."""
    assert shadows < 500 and 0 <= forget_class < 10
    return 10**9 + 10**7 * seed + 10**6 * forget_class + 500_000 * KINDS.index(kind) + 1_000 * shadows + s


def variances(shadows: int) -> list[bool]:
    """``fixed_variance`` values scored: the pipeline's rule first (pooled below 16), then pooled from 16 on."""
    return [True] if shadows < 16 else [False, True]


def one_class(images, labels, split, original_logits, forget_class, seed, args, recipe, stats) -> dict:
    """Per S: U-LiRA of the original and of a retrained target, and the seconds its shadows took."""
    parts = class_splits(labels.numpy(), split.train, split.test, forget_class)
    remain = parts["remain"]
    indices, positive = candidates(parts["forget"], parts["forget_test"], seed)
    idx = torch.as_tensor(indices)
    retrained, _ = fit(images, labels, torch.as_tensor(remain), recipe, args, 1000 * seed + 1, *stats)
    targets = {"original": original_logits[idx], "retrain": predict(retrained, images[idx])}
    forget_acc = float((targets["retrain"].argmax(1) == labels[idx]).double().mean())
    found = {"candidates": len(indices), "positives": int(positive.sum()), "retrain_candidate_acc": forget_acc,
             "original_candidate_acc": float((targets["original"].argmax(1) == labels[idx]).double().mean())}
    for shadows in args.shadows:
        start = time.perf_counter()
        keep = shadow_keep(shadows, len(indices), (seed, forget_class, shadows))
        logits = {kind: [] for kind in KINDS}
        for s in range(shadows):
            for kind in KINDS:
                train = np.sort(np.concatenate([remain, indices[keep[s]]])) if kind == "original" else remain
                model, _ = fit(images, labels, torch.as_tensor(train), recipe, args,
                               shadow_seed(seed, forget_class, kind, shadows, s), *stats)
                logits[kind].append(predict(model, images[idx]))
        row = {"seconds": time.perf_counter() - start}
        for fixed in variances(shadows):
            for kind in KINDS:
                scores = ulira_scores(targets[kind], torch.stack(logits[kind]), keep, labels[idx], fixed_variance=fixed)
                metrics = ulira_metrics(scores, positive, seed=seed, repeats=args.repeats)
                row[f"{kind}_{'pooled' if fixed else 'per_candidate'}"] = metrics
        found[str(shadows)] = row
        print(f"  seed {seed} class {forget_class} S {shadows}: {row['seconds']:.0f} s, "
              + ", ".join(f"{k} {v['ulira_auc']:.1f}" for k, v in row.items() if k != "seconds"), flush=True)
    return found


def print_table(cells: list[dict], shadows: list[int]) -> None:
    """One row per S and variance: both AUCs, their paired difference and whether it lies above 0."""
    print("| S | variance | original U-LiRA AUC | retrain U-LiRA AUC | original - retrain [95% interval] | "
          "excludes 0 (control passes) | wall-clock s |")
    print("|---|---|---|---|---|---|---|")
    for s in shadows:
        for fixed in variances(s):
            name = "pooled" if fixed else "per_candidate"
            auc = {kind: [c[str(s)][f"{kind}_{name}"]["ulira_auc"] for c in cells] for kind in KINDS}
            o, r = interval(auc["original"]), interval(auc["retrain"])
            d = interval(np.subtract(auc["original"], auc["retrain"]))
            passes = "yes" if d["low"] > 0 else ("no (below 0)" if d["high"] < 0 else "no")
            seconds = sum(c[str(s)]["seconds"] for c in cells)
            rule = "" if fixed == (s < 16) else " (extra)"
            print(f"| {s} | {name.replace('_', '-')}{rule} | {o['mean']:.1f} ± {o['ci95']:.1f} | "
                  f"{r['mean']:.1f} ± {r['ci95']:.1f} | {d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}] | "
                  f"{passes} | {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--classes", default="1,7", help="forgotten classes, one cell each per seed")
    parser.add_argument("--shadows", default="4,8,16,32", help="shadow counts S (each >= 4)")
    parser.add_argument("--epochs", type=int, default=None, help="override params.yaml's train.epochs")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--json", default=None, help="write every cell's numbers here")
    args = parser.parse_args()
    args.classes = [int(c) for c in args.classes.split(",")]
    args.shadows = [int(s) for s in args.shadows.split(",")]
    params = load_params(args.params)
    recipe = params.train if args.epochs is None else params.train.model_copy(update={"epochs": args.epochs})
    # what benchmarks/amun.py's load and fit read from their arguments
    args.dataset, args.model, args.width, args.lipschitz = "digits", params.model.name, params.model.width, None
    args.repeats = params.mia.repeats
    images, labels, test_start = load(args)
    cells, begin, regime = [], time.perf_counter(), []
    for seed in map(int, args.seeds.split(",")):
        split = make_splits(labels.numpy(), seed=seed, forget=ForgetConfig(fraction=0.1), test_start=test_start)
        pixels = to_float(images[torch.as_tensor(split.train)])
        stats = (pixels.mean(dim=(0, 2, 3)).tolist(), pixels.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist(),
                 int(labels.max()) + 1)
        original, _ = fit(images, labels, torch.as_tensor(split.train), recipe, args, seed, *stats)
        logits = predict(original, images)
        test = torch.as_tensor(split.test)
        regime.append(100.0 * float((logits[test].argmax(1) == labels[test]).double().mean()))
        for forget_class in args.classes:
            cells.append({"seed": seed, "class": forget_class,
                          **one_class(images, labels, split, logits, forget_class, seed, args, recipe, stats)})
            if args.json:
                Path(args.json).write_text(json.dumps({"args": vars(args), "cells": cells}, indent=1, default=str))
    print(f"\ndigits: {len(labels)} images, {args.model}, {recipe.epochs} epochs, batch {recipe.batch_size}, "
          f"lr {recipe.lr}, {torch.get_num_threads()} threads; {len(cells)} cells (seeds {args.seeds} x classes "
          f"{args.classes}), {cells[0]['candidates']} candidates ({cells[0]['positives']} forget) in the first; "
          f"original test acc {np.mean(regime):.1f}; {time.perf_counter() - begin:.0f} s in all. "
          f"Mean ± 95% Student-t half-width over cells; AUC in percent.\n")
    print_table(cells, args.shadows)


if __name__ == "__main__":
    main()
