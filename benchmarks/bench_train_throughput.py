"""Training throughput (images/s) of ``unlearn.training.train_`` versus a bare PyTorch loop.

Both loops train the same architecture (``unlearn.models.create_model``) on the same
uint8 data with the same batch size and the same optimiser (SGD, momentum 0.9,
weight decay 5e-4), converting each batch with ``images[idx].float().div_(255)``
and drawing a fresh ``randperm`` per epoch. The bare loop does nothing else; the
project's loop also keeps its per-epoch statistics, LR schedule and callback hooks.

Cases: small_cnn on digits-like data (1x8x8, 1348 samples, batch 64) and small_cnn on
CIFAR-like random data (3x32x32, 2048 samples, batch 128). After one warm-up epoch
per loop, repeats of ``--epochs`` epochs are interleaved (ours, bare, bare, ours, ...)
so machine noise hits both alike; the table reports the median images/s of each and
the ratio ours/bare of those medians, plus the median of the per-repeat paired ratios
(each compares two back-to-back runs, so it is the more robust number on a busy
machine). The target is a ratio >= 0.90, i.e. ours within 10% of bare.

Run from the project root with the project's virtualenv active:

    python benchmarks/bench_train_throughput.py [--repeats 5] [--epochs 2] [--threads 0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from unlearn.config import TrainConfig
from unlearn.models import create_model
from unlearn.training import train_

LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    channels: int
    size: int
    samples: int
    batch_size: int
    classes: int = 10


CASES = (
    Case("digits-like 1x8x8", "small_cnn", 1, 8, 1348, 64),
    Case("cifar-like 3x32x32", "small_cnn", 3, 32, 2048, 128),
)


def make_data(case: Case, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (case.samples, case.channels, case.size, case.size)
    images = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    labels = torch.randint(0, case.classes, (case.samples,), generator=g, dtype=torch.int64)
    return images, labels


def make_model(case: Case) -> torch.nn.Module:
    c = case.channels
    return create_model(case.model, in_channels=c, num_classes=case.classes, mean=[0.5] * c, std=[0.5] * c, seed=0)


def run_ours(model, images, labels, epochs: int, batch_size: int) -> float:
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    start = time.perf_counter()
    train_(model, images, labels, cfg, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def run_bare(model, images, labels, epochs: int, batch_size: int) -> float:
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=generator).split(batch_size):
            x = images[idx].float().div_(255)
            loss = F.cross_entropy(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def bench_case(case: Case, repeats: int, epochs: int) -> dict[str, float]:
    images, labels = make_data(case)
    loops = {"ours": (run_ours, make_model(case)), "bare": (run_bare, make_model(case))}
    for fn, model in loops.values():  # warm-up: one epoch each (allocator, kernels, lazy imports)
        fn(model, images, labels, 1, case.batch_size)
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for rep in range(repeats):
        order = list(loops) if rep % 2 == 0 else list(reversed(loops))  # ABBA interleaving
        for name in order:
            fn, model = loops[name]
            seconds = fn(model, images, labels, epochs, case.batch_size)
            rates[name].append(case.samples * epochs / seconds)
    # Each repeat's ratio compares two back-to-back runs, so slow drifts in machine load cancel.
    paired = statistics.median(o / b for o, b in zip(rates["ours"], rates["bare"]))
    ours, bare = statistics.median(rates["ours"]), statistics.median(rates["bare"])
    return {"ours": ours, "bare": bare, "ratio": ours / bare, "paired": paired,
            "ours_all": rates["ours"], "bare_all": rates["bare"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per loop (default 5)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed repeat (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0 keeps the default")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats x {args.epochs} epochs, median images/s\n")
    print("| case | batch | ours (img/s) | bare (img/s) | ours/bare | paired ratio | target >= 0.90 "
          "| ours runs | bare runs |")
    print("|---|---:|---:|---:|---:|---:|---|---|---|")
    for case in CASES:
        r = bench_case(case, args.repeats, args.epochs)
        runs = {k: ", ".join(f"{v:.0f}" for v in r[f"{k}_all"]) for k in ("ours", "bare")}
        verdict = "ok" if r["paired"] >= 0.90 else "MISSED"
        print(f"| {case.name} | {case.batch_size} | {r['ours']:.0f} | {r['bare']:.0f} | {r['ratio']:.2f} "
              f"| {r['paired']:.2f} | {verdict} | {runs['ours']} | {runs['bare']} |", flush=True)


if __name__ == "__main__":
    main()
