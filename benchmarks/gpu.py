"""ResNet-18 on CIFAR-10-sized data: the library's training loop against a bare PyTorch
loop, side by side, with D_A's and RMIA's throughput.

Measures, on one device, with the same precision and memory layout for both loops:

* ``train_`` images/s against a bare loop (index gathers from a uint8 tensor already on
  the device, crop + flip on the device, SGD); goal >= 0.9x;
* the time of one CIFAR-10 epoch (50,000 images) from ``train_``'s rate (goal <= 3 s on
  one H200) and the fraction of the device's bf16 peak that is (3 x the forward FLOPs of
  ResNet-18 at 32x32, 0.56 GFLOP, per image; ``--peak-tflops``, default the H200's 989);
* D_A (``adversarial_set``) samples/s, and the RMIA scoring time of 60,000 samples with
  K reference models.

    python benchmarks/gpu.py                         # on the GPU, bf16
    python benchmarks/gpu.py --device cpu --smoke    # seconds on a CPU: checks it runs

Images are random uint8 (speed does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.nn import functional as F

RESNET18_CIFAR_GFLOP = 0.56  # forward pass of one 32x32 image


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(model, images, labels, batch_size: int, steps: int, device, generator) -> float:
    """Images/s of the plainest loop with the same work: gather, crop + flip, forward, SGD."""
    from unlearn.device import autocast

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    n = len(images)
    synchronize(device)
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=generator).to(device)
        x = images[idx].float().div_(255)
        pad = F.pad(x, (4, 4, 4, 4))
        dy, dx = np.random.randint(0, 9, 2)
        x = pad[:, :, dy:dy + 32, dx:dx + 32]
        x = torch.where(torch.rand(batch_size, 1, 1, 1, device=device) < 0.5, x.flip(3), x)
        x = x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def library_loop(model, images, labels, batch_size: int, steps: int, device) -> float:
    """Images/s of :func:`unlearn.training.train_` on ``steps`` batches (one epoch of them)."""
    from unlearn.config import TrainConfig
    from unlearn.training import train_

    subset = torch.arange(steps * batch_size) % len(images)
    cfg = TrainConfig(epochs=1, batch_size=batch_size, lr=0.05, schedule="constant", augment=True)
    synchronize(device)
    start = time.perf_counter()
    train_(model, images[subset.to(images.device)], labels[subset.to(labels.device)], cfg,
           generator=torch.Generator().manual_seed(0))
    synchronize(device)
    return len(subset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default=None, help="fp32 | bf16 (default: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (CPU)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak")
    args = parser.parse_args()

    from unlearn.attacks import adversarial_set
    from unlearn.device import precision, prepare_model, resolve_device
    from unlearn.config import MiaConfig
    from unlearn.evaluation.suite import attack_scores
    from unlearn.models import create_model

    device = resolve_device(args.device)
    chosen = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    n, batch, steps, k = (512, 64, 3, 2) if args.smoke else (50_000, 512, 60, 4)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator).to(device)
    labels = torch.randint(0, 10, (n,), generator=generator).to(device)
    width = 8 if args.smoke else 64

    def fresh():
        return prepare_model(create_model("resnet18", in_channels=3, num_classes=10, seed=0, width=width,
                                          batch_norm=True, mean=[0.5] * 3, std=[0.25] * 3), device)

    rows = []
    with precision(chosen):
        library_loop(fresh(), images, labels, batch, 2, device)  # warm-up (cuDNN autotuning, allocator)
        bare = bare_loop(fresh(), images, labels, batch, steps, device, generator)
        ours = library_loop(fresh(), images, labels, batch, steps, device)
        epoch_s = 50_000 / ours
        tflops = ours * 3 * RESNET18_CIFAR_GFLOP / 1000
        rows += [("bare loop, images/s", f"{bare:,.0f}"), ("train_, images/s", f"{ours:,.0f}"),
                 ("train_ / bare", f"{ours / bare:.2f} (goal >= 0.9)"),
                 ("CIFAR-10 epoch (50,000 images), s", f"{epoch_s:.2f} (goal <= 3 on one H200)"),
                 ("achieved TFLOP/s (3 x 0.56 GFLOP per image)",
                  "n/a (smoke width)" if args.smoke else f"{tflops:.1f}"),
                 (f"fraction of {args.peak_tflops:g} TFLOP/s peak",
                  "n/a (smoke width)" if args.smoke else f"{tflops / args.peak_tflops:.1%}")]
        model = fresh().eval()
        attacked = 64 if args.smoke else 2048
        x = images[:attacked].float() / 255
        synchronize(device)
        start = time.perf_counter()
        pgd_steps = 10 if args.smoke else 50
        adversarial_set(model, x, labels[:attacked], eps_init=0.5, steps=pgd_steps, max_doublings=2, batch_size=512)
        synchronize(device)
        rows.append((f"D_A ({pgd_steps} PGD steps per budget), samples/s",
                     f"{attacked / (time.perf_counter() - start):,.0f}"))
    samples = 600 if args.smoke else 60_000
    rng = np.random.default_rng(0)
    target = torch.as_tensor(rng.normal(size=(samples, 10)), dtype=torch.float32)
    references = torch.as_tensor(rng.normal(size=(8, samples, 10)), dtype=torch.float32)
    keep = rng.random((8, samples)).argsort(axis=0) < 4  # every sample IN for 4 of the 8, as the pipeline's
    start = time.perf_counter()
    attack_scores(target, references, keep, torch.as_tensor(rng.integers(0, 10, samples)),
                  np.arange(samples // 2, samples), MiaConfig(), 0, attacks=("rmia",))
    rows.append((f"RMIA scores, {samples:,} samples x {references.shape[0]} references, s",
                 f"{time.perf_counter() - start:.2f}"))
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"precision {chosen}, ResNet-18 width {width}, batch {batch}{', smoke sizes' if args.smoke else ''}\n")
    print("| what | value |")
    print("|---|---:|")
    for what, value in rows:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()
