"""The cost of per-epoch checkpoints: one training epoch with and without them, side by side.

For each setting, epochs of ``train_`` run alternately without and with an
:class:`~unlearn.checkpoint.EpochCheckpoint` (in a temporary directory), and the table
gives the median epoch time of each, the overhead, the checkpoint's size and the time
to save it and to load it back (once each). The inputs are random images of the setting's shape (speed does not
depend on their content).

    python benchmarks/checkpoint.py [--repeats 3] [--samples 512]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from unlearn.checkpoint import EpochCheckpoint
from unlearn.config import TrainConfig
from unlearn.models import create_model
from unlearn.training import train_

SETTINGS = (  # name, model, input shape, width
    ("small_cnn 1x8x8 (digits)", "small_cnn", (1, 8, 8), None),
    ("small_cnn 3x32x32", "small_cnn", (3, 32, 32), None),
    ("resnet18 3x32x32 (CIFAR preset)", "resnet18", (3, 32, 32), None),
)


def _epoch(model_name: str, shape: tuple, width, samples: int, checkpoint: EpochCheckpoint | None) -> float:
    model = create_model(model_name, in_channels=shape[0], num_classes=10, mean=[0.5] * shape[0],
                         std=[0.25] * shape[0], seed=0, width=width)
    images = torch.randint(0, 256, (samples, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (samples,), generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    train_(model, images, labels, TrainConfig(epochs=1, batch_size=128), generator=torch.Generator().manual_seed(0),
           checkpoint=checkpoint)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.samples} samples per epoch\n")
    print("| setting | epoch without | epoch with checkpoint | overhead | checkpoint size | save | load |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, model_name, shape, width in SETTINGS:
            plain, saved = [], []
            path = Path(tmp) / f"{model_name}.pt"
            for _ in range(args.repeats):
                plain.append(_epoch(model_name, shape, width, args.samples, None))
                path.unlink(missing_ok=True)
                saved.append(_epoch(model_name, shape, width, args.samples, EpochCheckpoint(path, "bench")))
            checkpoint = EpochCheckpoint(path, "bench")
            start = time.perf_counter()
            state = checkpoint.load()
            load_s = time.perf_counter() - start
            start = time.perf_counter()
            checkpoint.save({key: value for key, value in state.items() if key != "fingerprint"})
            save_s = time.perf_counter() - start
            without, with_ = statistics.median(plain), statistics.median(saved)
            print(f"| {label} | {without:.3f} s | {with_:.3f} s | {100 * (with_ / without - 1):+.1f}% "
                  f"| {path.stat().st_size / 2**20:.1f} MiB | {1000 * save_s:.0f} ms | {1000 * load_s:.0f} ms |")


if __name__ == "__main__":
    main()
