"""ResNet-18 on CIFAR-10-sized data: the library's training loop against a bare PyTorch
loop doing the same work, side by side, with D_A's throughput on a trained model.

Runs with torch alone (no pydantic, MLflow, DVC or Prefect: the device image lacks them).
Data are placed as the pipeline places them: the uint8 images on the device once, the
labels on the CPU (``train_`` moves them once). Both loops do the same work per step:
an index gather, a per-sample random crop (padding 4) and flip, channels_last after the
augmentation on CUDA, forward and backward in the chosen precision, SGD with momentum
and weight decay. Timing is by CUDA events (wall clock on the CPU).

The images are synthetic but learnable (a fixed random pattern per class plus noise),
so that one epoch of ``train_`` gives a model that classifies them and D_A must run PGD
(on an untrained model most samples are misclassified already and skip it).

FLOPs per image are counted by ``torch.utils.flop_counter`` (2 per multiply-add); a
training step is taken as 3 forward passes. Peak: ``--peak-tflops`` (dense bf16; default
989, the H100 SXM's and the H200's).

    python benchmarks/gpu.py                         # on the GPU, bf16, batch 128 and 256
    python benchmarks/gpu.py --device cpu --smoke    # seconds on a CPU: checks it runs
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class LoopConfig:
    """The fields of the pipeline's ``TrainConfig`` that ``train_`` reads (no pydantic here)."""

    epochs: int = 1
    batch_size: int = 256
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "constant"
    step_size: int = 10
    gamma: float = 0.1
    augment: bool = True
    crop_padding: int = 4


class Timer:
    """Seconds between ``start()`` and ``stop()``: CUDA events on a GPU, the wall clock elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self.begin, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            return self.begin.elapsed_time(self.end) / 1000
        return time.perf_counter() - self.t0


def learnable_data(n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (n, 3, 32, 32) on ``device`` (a class pattern plus noise) and int64 labels on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.rand(10, 3, 32, 32, generator=generator) * 255
    labels = torch.randint(0, 10, (n,), generator=generator)
    noise = torch.randn(n, 3, 32, 32, generator=generator) * 40
    images = (patterns[labels] * 0.6 + 50 + noise).clamp(0, 255).to(torch.uint8)
    return images.to(device), labels


def resnet18(device: torch.device, width: int = 64) -> torch.nn.Module:
    from unlearn.device import prepare_model
    from unlearn.models import create_model

    return prepare_model(create_model("resnet18", in_channels=3, num_classes=10, seed=0, width=width,
                                      batch_norm=True, mean=[0.5] * 3, std=[0.25] * 3), device)


def forward_gflop(model: torch.nn.Module, device: torch.device) -> float:
    """GFLOP of one forward pass of one 32x32 image, as torch's FLOP counter counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, 32, 32, device=device))
    model.train()
    return counter.get_total_flops() / 1e9


def library_epoch(model, images, labels, batch_size: int, device: torch.device) -> float:
    """Seconds of one epoch of :func:`unlearn.training.train_` over ``images``."""
    from unlearn.training import train_

    timer = Timer(device)
    timer.start()
    train_(model, images, labels, LoopConfig(batch_size=batch_size), generator=torch.Generator().manual_seed(0))
    return timer.stop()


def bare_epoch(model, images, labels, batch_size: int, device: torch.device, steps: int | None = None) -> float:
    """Seconds of the plainest loop doing ``train_``'s work per step (see the module doc),
    over ``steps`` batches (default: one epoch); the random draws are made on the device."""
    from unlearn.device import autocast

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    labels = labels.to(device)
    n, pad = len(images), 4
    steps = steps or -(-n // batch_size)
    rows = torch.arange(32, device=device).view(1, 1, 32, 1)
    cols = torch.arange(32, device=device).view(1, 1, 1, 32)
    model.train()
    timer = Timer(device)
    timer.start()
    order = torch.randperm(n, device=device)
    for step in range(steps):
        idx = order[step * batch_size:(step + 1) * batch_size]
        b = len(idx)
        x = F.pad(images[idx].float().div_(255), (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b, 1, 1, 1), device=device)
        dx = torch.randint(0, 2 * pad + 1, (b, 1, 1, 1), device=device)
        x = x[torch.arange(b, device=device).view(b, 1, 1, 1), torch.arange(3, device=device).view(1, 3, 1, 1),
              (rows + dy).expand(b, 3, 32, 32), (cols + dx).expand(b, 3, 32, 32)]
        x = torch.where(torch.rand(b, 1, 1, 1, device=device) < 0.5, x.flip(3), x)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return timer.stop() * (-(-n // batch_size)) / steps


def da_rate(model, images, labels, device: torch.device, samples: int, steps: int) -> tuple[float, float]:
    """D_A (``adversarial_set``) samples/s on ``samples`` images, and the mean budget found."""
    from unlearn.attacks import adversarial_set

    x = images[:samples].float() / 255
    timer = Timer(device)
    timer.start()
    found = adversarial_set(model, x, labels[:samples], eps_init=0.25, steps=steps, max_doublings=4, batch_size=512)
    seconds = timer.stop()
    return samples / seconds, float(found.eps.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default=None, help="fp32 | bf16 (default: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (CPU)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak")
    args = parser.parse_args()

    from unlearn.device import precision, resolve_device

    device = resolve_device(args.device)
    chosen = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    n, width, batches = (256, 4, (32, 64)) if args.smoke else (50_000, 64, (128, 256))
    images, labels = learnable_data(n, device)
    gflop = forward_gflop(resnet18(device, width), device)
    rows = [("forward GFLOP per image (FlopCounterMode)", f"{gflop:.3f}")]
    with precision(chosen):
        for batch in batches:
            library_epoch(resnet18(device, width), images[:batch * 4], labels[:batch * 4], batch, device)  # warm-up
            bare = bare_epoch(resnet18(device, width), images, labels, batch, device)
            model = resnet18(device, width)
            ours = library_epoch(model, images, labels, batch, device)
            tflops = n * 3 * gflop / ours / 1000
            rows += [(f"batch {batch}: bare loop, s/epoch", f"{bare:.2f}"),
                     (f"batch {batch}: train_, s/epoch", f"{ours:.2f}"),
                     (f"batch {batch}: bare / train_ speed", f"{bare / ours:.2f} (goal >= 0.9)"),
                     (f"batch {batch}: share of {args.peak_tflops:g} TFLOP/s", f"{tflops / args.peak_tflops:.1%}")]
        steps = 5 if args.smoke else 20
        rate, eps = da_rate(model, images, labels, device, 64 if args.smoke else 2048, steps)
        rows.append((f"D_A samples/s (trained model, {steps} PGD steps per budget)",
                     f"{rate:,.0f} (mean eps {eps:.2f})"))
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"precision {chosen}, ResNet-18 width {width}, {n:,} images{', smoke sizes' if args.smoke else ''}\n")
    print("| what | value |")
    print("|---|---:|")
    for what, value in rows:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
