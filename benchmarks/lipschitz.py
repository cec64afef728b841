"""Accuracy and speed of spectral-norm estimators on single affine layers.

For each layer (seeded: CxC 3x3 convs on CxSxS inputs, default C=16, S=8, zero padded
stride 1, stride 2, dilation 2, circular padding, groups 2, conv + BatchNorm in eval mode with
randomised running statistics, and Linear 256->128) the ground truth is the largest
singular value of the layer's full Jacobian (``dense_singular_values``, float64).
Each method is scored by its relative error against it and by the median time per
call over ``--repeats`` repeats, interleaved (every repeat runs every method on
every layer, in a rotated order, after one untimed warm-up pass) so machine noise
hits all methods alike:

* FastClip: ``unlearn.lipschitz.top_singular`` (autograd power iteration, ``--iters``);
* reshaped kernel: ``reshaped_kernel_norm`` (Miyato / ``torch.nn.utils.spectral_norm``;
  for conv + BN it is applied to the kernel with BN's per-channel scale folded in);
* FFT: ``fft_circular_norm`` (Sedghi et al.), and Gram: ``gram_iteration_bound``
  (Delattre et al.), both run on any plain Conv2d with groups=1 (n/a otherwise),
  although they model stride-1 circular convolutions only.

Expected: FastClip exact (< 0.1 %) everywhere; the reshaped kernel off by up to ~3x
on convolutions; FFT exact only for circular padding; Gram an upper bound of FFT.

A second table scores ``unlearn.lipschitz.clip_``: a copy of every layer is clipped to
``--clip-fraction`` (default 0.5) times its true norm, and the largest singular value
after the clip (dense SVD) is compared with that target (goal: within 1 %), with the
value ``clip_`` returned and its time (one call).

Run from the project root with the project's virtualenv active:

    python benchmarks/lipschitz.py [--repeats 5] [--iters 100] [--channels 16] [--size 8] [--threads 1] \
        [--clip-fraction 0.5]

``--threads 1`` is the default: with 2 threads on a 2-core machine shared with another
busy process, OpenMP stalls slowed the dense SVDs up to 30x. ``--size 16`` (4096-dim
inputs, closer to real layers) runs ~2 min, almost all in the dense SVDs (ground truth).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Callable

import torch
from torch import nn

from unlearn.lipschitz import clip_, top_singular
from unlearn.lipschitz.baselines import (dense_singular_values, fft_circular_norm, gram_iteration_bound,
                                         reshaped_kernel_norm)


def make_layers(seed: int, c: int, size: int) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    torch.manual_seed(seed)
    shape = (c, size, size)
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.1, 4.0)
    return [
        ("conv zero-pad s1", nn.Conv2d(c, c, 3, padding=1), shape),
        ("conv zero-pad s2", nn.Conv2d(c, c, 3, stride=2, padding=1), shape),
        ("conv dilation 2", nn.Conv2d(c, c, 3, padding=2, dilation=2), shape),
        ("conv circular s1", nn.Conv2d(c, c, 3, padding=1, padding_mode="circular"), shape),
        ("conv groups 2", nn.Conv2d(c, c, 3, padding=1, groups=2), shape),
        ("conv + BN (eval)", nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), bn).eval(), shape),
        ("linear 256->128", nn.Linear(256, 128), (256,)),
    ]


def folded_kernel(module: nn.Module) -> nn.Module:
    """The weighted layer itself, or for conv + BN a stand-in whose weight has BN's scale folded in."""
    if not isinstance(module, nn.Sequential):
        return module
    conv, bn = module
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    stand_in = nn.Module()
    stand_in.weight = nn.Parameter(conv.weight.detach() * scale.view(-1, 1, 1, 1))
    return stand_in


def methods(iters: int) -> dict[str, Callable[[nn.Module, tuple], float | None]]:
    """Each method maps (layer, input shape) to its estimate of the top singular value, None if n/a."""
    def fastclip(m, shape):
        return float(top_singular(m, shape, 1, iters, generator=torch.Generator().manual_seed(0))[0][0])

    def fft_like(fn):
        def run(m, shape):
            try:
                return fn(m, shape)
            except ValueError:  # defined for stride-1, undilated, single-group Conv2d only
                return None
        return run

    return {
        "FastClip": fastclip,
        "reshaped kernel": lambda m, shape: reshaped_kernel_norm(folded_kernel(m)),
        "FFT (Sedghi)": fft_like(fft_circular_norm),
        "Gram (Delattre)": fft_like(gram_iteration_bound),
    }


def clip_table(layers, truth: dict[str, float], fraction: float) -> None:
    """Clip a copy of every layer to ``fraction`` x its true norm; print the exact norm after it."""
    print(f"\nclip_ to {fraction} x the true norm; cells: exact sigma_max after / target - 1 (dense SVD), "
          "the value clip_ returned / target - 1, seconds\n")
    print("| layer | target | exact after | returned | s |")
    print("|---|---:|---:|---:|---:|")
    for name, module, shape in layers:
        layer, target = copy.deepcopy(module), fraction * truth[name]
        start = time.perf_counter()
        returned = clip_(layer, shape, target)
        seconds = time.perf_counter() - start
        exact = float(dense_singular_values(layer, shape)[0])
        print(f"| {name} | {target:.4f} | {100 * (exact / target - 1):+.3f}% | {100 * (returned / target - 1):+.3f}% "
              f"| {seconds:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=100, help="power iterations for FastClip")
    parser.add_argument("--channels", type=int, default=16, help="conv in = out channels")
    parser.add_argument("--size", type=int, default=8, help="conv input height = width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip-fraction", type=float, default=0.5, help="clip_ target as a fraction of the norm")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads, 0 keeps torch's default (see above)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    layers = make_layers(args.seed, args.channels, args.size)
    fns = methods(args.iters)

    truth, dense_ms = {}, {}
    for name, module, shape in layers:
        start = time.perf_counter()
        truth[name] = float(dense_singular_values(module, shape)[0])
        dense_ms[name] = 1e3 * (time.perf_counter() - start)

    values: dict[tuple[str, str], float | None] = {}
    times: dict[tuple[str, str], list[float]] = {(layer, m): [] for layer, _, _ in layers for m in fns}
    method_names = list(fns)
    for method in method_names:  # warm-up
        fns[method](*layers[0][1:])
    for r in range(args.repeats):
        order = method_names[r % len(method_names):] + method_names[:r % len(method_names)]  # rotate
        for name, module, shape in layers:
            for method in order:
                start = time.perf_counter()
                value = fns[method](module, shape)
                times[name, method].append(1e3 * (time.perf_counter() - start))
                values[name, method] = value

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} interleaved repeats, "
          f"FastClip iters={args.iters}, convs {args.channels}x{args.size}x{args.size}; "
          "cells: signed relative error vs dense SVD / median ms per call\n")
    print("| layer | true sigma_max (dense ms) | " + " | ".join(method_names) + " |")
    print("|---|---:|" + "---:|" * len(method_names))
    for name, _, _ in layers:
        cells = []
        for method in method_names:
            value = values[name, method]
            if value is None:
                cells.append("n/a")
                continue
            error = 100.0 * (value - truth[name]) / truth[name]
            cells.append(f"{error:+.4g}% / {statistics.median(times[name, method]):.2f} ms")
        print(f"| {name} | {truth[name]:.4f} ({dense_ms[name]:.0f} ms) | " + " | ".join(cells) + " |")
    clip_table(layers, truth, args.clip_fraction)


if __name__ == "__main__":
    main()
