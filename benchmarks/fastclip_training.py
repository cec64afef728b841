"""Cost and effect of FastClip spectral-norm clipping during training.

Trains ``small_cnn`` (default width) on digits (a seeded 75 % for train, the rest for
test; inputs normalised by the train pixels' mean and std, as the pipeline does) with
``train_`` and the ``TrainConfig`` defaults (SGD momentum 0.9, weight decay 5e-4,
cosine) for ``--epochs`` epochs: ``none`` (no clipping), ``ignore`` (FastClip to
``--target`` every ``--clip-every`` steps, ``bn="ignore"``), and on a model built with
``batch_norm=False``: ``none-noBN`` (no clipping) and ``remove`` (``bn="remove"``).

Repeats are interleaved (every variant once per repeat, in a rotated order) after
one untimed 1-epoch warm-up. Columns (medians over repeats): wall-clock seconds of
``train_`` (final clip included); overhead versus the unclipped run of the same
architecture; seconds inside FastClip's hooks, periodic + final clip (their share of
the unclipped time is the overhead with less noise); test accuracy; the largest
exact norm (``dense_singular_values``) over ``cb.layers`` at the end (for unclipped
runs a FastClip is built only to list layers); ``max conv+BN``, the largest norm of a
conv merged with its BatchNorm (eval mode), which ``bn="ignore"`` leaves unbounded.
Goal: overhead <= 30 % at ``--clip-every 50``; every layer <= 1.02 x target at the end.

Run from the project root with the project's virtualenv active:

    python benchmarks/fastclip_training.py [--epochs 20] [--repeats 3] [--threads 1] \
        [--variants none,ignore,none-noBN,remove] [--clip-every 50] [--target 1.0]

``--threads 1`` is the default: with 2 threads on a 2-core machine shared with another
busy process, OpenMP stalls made a run take 30x longer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from unlearn.config import TrainConfig
from unlearn.data import load_dataset
from unlearn.evaluation import accuracy, predict
from unlearn.lipschitz import FastClip, affine_layers
from unlearn.lipschitz.baselines import dense_singular_values
from unlearn.models import create_model
from unlearn.training import Callback, train_

# name: (batch_norm, bn mode or None for no clipping)
VARIANTS = {"none": (True, None), "ignore": (True, "ignore"), "composite": (True, "composite"), "none-noBN": (False, None),
            "remove": (False, "remove")}


class Timed(Callback):
    """Wraps a callback, adding up the seconds spent in its hooks: seconds[0] per step, [1] at the end."""

    def __init__(self, inner: Callback) -> None:
        self.inner, self.seconds = inner, [0.0, 0.0]

    def _timed(self, i: int, hook, *args) -> None:
        start = time.perf_counter()
        hook(*args)
        self.seconds[i] += time.perf_counter() - start

    def on_step(self, model, step: int) -> None:
        self._timed(0, self.inner.on_step, model, step)

    def on_train_end(self, model) -> None:
        self._timed(1, self.inner.on_train_end, model)


def split_digits(seed: int, train_fraction: float = 0.75):
    data = load_dataset("digits")
    order = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(seed))
    cut = int(round(train_fraction * len(order)))
    train, test = order[:cut], order[cut:]
    return data.images[train], data.labels[train], data.images[test], data.labels[test]


def max_norm(layers) -> float:
    return max(float(dense_singular_values(layer.module, layer.input_shape)[0]) for layer in layers)


def run(variant: str, data, args) -> dict:
    batch_norm, mode = VARIANTS[variant]
    x_train, y_train, x_test, y_test = data
    pixels = x_train.float().div(255)
    model = create_model("small_cnn", in_channels=1, num_classes=10, mean=pixels.mean(dim=(0, 2, 3)).tolist(),
                         std=pixels.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist(), seed=args.seed,
                         batch_norm=batch_norm)
    shape = tuple(x_train.shape[1:])
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule="cosine")
    callbacks = []
    if mode is not None:
        callbacks = [Timed(FastClip(model, shape, target=args.target, clip_every=args.clip_every, bn=mode,
                                    seed=args.seed))]
    start = time.perf_counter()
    train_(model, x_train, y_train, cfg, generator=torch.Generator().manual_seed(args.seed), callbacks=callbacks)
    seconds = time.perf_counter() - start
    lister = callbacks[0].inner if callbacks else FastClip(model, shape, target=1.0,
                                                           bn="ignore" if batch_norm else "remove")
    return {
        "seconds": seconds,
        "test_acc": accuracy(predict(model, x_test), y_test),
        "max_sigma": max_norm(lister.layers),
        "max_composite": max_norm(affine_layers(model, shape, "composite")) if batch_norm else None,
        "clip_s": callbacks[0].seconds if callbacks else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--target", type=float, default=1.0)
    parser.add_argument("--clip-every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads, 0 keeps torch's default (see above)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    names = [v for v in args.variants.split(",") if v]
    if set(names) - set(VARIANTS):
        parser.error(f"--variants: known are {', '.join(VARIANTS)}")
    data = split_digits(args.seed)

    run(names[0], data, argparse.Namespace(**{**vars(args), "epochs": 1}))  # warm-up, untimed
    results: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            results[name].append(run(name, data, args))

    seconds = {name: statistics.median(res["seconds"] for res in rows) for name, rows in results.items()}
    clip_s = {name: [statistics.median(res["clip_s"][i] for res in rows) for i in (0, 1)]
              for name, rows in results.items() if rows[0]["clip_s"]}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, small_cnn on digits "
          f"({len(data[0])} train / {len(data[2])} test), {args.epochs} epochs, "
          f"target {args.target}, clip every {args.clip_every}, {args.repeats} interleaved repeat(s)\n")
    print("| variant | seconds | overhead | in clips: periodic + final s (% of unclipped) "
          "| test acc % | max layer sigma | <= 1.02 x target | max conv+BN |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for name, rows in results.items():
        last = rows[-1]
        batch_norm, mode = VARIANTS[name]
        base = "none" if batch_norm else "none-noBN"
        overhead = f"{100 * (seconds[name] / seconds[base] - 1):+.1f}%" if mode and base in seconds else "-"
        share = f" ({100 * sum(clip_s[name]) / seconds[base]:.1f}%)" if mode and base in seconds else ""
        inside = f"{clip_s[name][0]:.2f} + {clip_s[name][1]:.2f}{share}" if mode else "-"
        ok = "yes" if last["max_sigma"] <= 1.02 * args.target else "no"
        composite = "n/a" if last["max_composite"] is None else f"{last['max_composite']:.3f}"
        print(f"| {name} | {seconds[name]:.2f} | {overhead} | {inside} | {last['test_acc']:.2f} | "
              f"{last['max_sigma']:.4f} | {ok if mode else '-'} | {composite} |")


if __name__ == "__main__":
    main()
