"""Host-side work per step, counted: aten ops the dispatcher runs per training or PGD step,
and the ops among them that make a GPU wait (``nonzero``, ``item`` / ``bool`` reads, and
boolean-mask indexing, which calls ``nonzero``).

Counts are made on the CPU with a ``TorchDispatchMode`` (the same ops dispatch on a GPU,
where each is a kernel launch or a sync). Run it on two checkouts to compare code
versions, e.g. before and after a change:

    python benchmarks/host_ops.py                       # this checkout
    PYTHONPATH=/path/to/old/src python benchmarks/host_ops.py

The accelerator path of PGD (masks instead of compaction) is counted from
``unlearn.attacks.pgd._masked`` when the checkout has it.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING = {"nonzero", "_local_scalar_dense", "is_nonzero", "masked_select"}


class Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.__name__.split(".")[0]] += 1
        return func(*args, **(kwargs or {}))


def counted(fn) -> Counter:
    with Count() as mode:
        fn()
    return mode.ops


def row(name: str, ops: Counter, steps: int) -> str:
    syncs = sum(n for op, n in ops.items() if op in SYNCING)
    return f"| {name} | {sum(ops.values()) / steps:.0f} | {syncs / steps:.2f} |"


def main() -> None:
    import unlearn
    from unlearn.config import FinetuneConfig, L1SparseConfig, SalUnConfig
    from unlearn.data import load_dataset
    from unlearn.models import create_model
    from unlearn.unlearning import METHODS, ForgetTask
    from unlearn.attacks import pgd

    data = load_dataset("digits")
    images, labels = data.images[:640], data.labels[:640]
    model = create_model("resnet18", in_channels=1, num_classes=10, mean=[0.3], std=[0.3], seed=0, width=8)
    task = ForgetTask(images, labels, torch.arange(64), torch.arange(64, 640), 10, None)
    batch, epochs = 64, 1
    steps = epochs * (-(-640 // batch))
    print(f"unlearn from {unlearn.__file__}; ResNet-18 width 8 (62 parameters), batch {batch}, {steps} steps\n")
    print("| per step | aten ops | syncing ops |")
    print("|---|---:|---:|")
    cfg = dict(epochs=epochs, batch_size=batch, augment=True, crop_padding=1)
    for name, section in (("ft", FinetuneConfig(**cfg)), ("l1_sparse", L1SparseConfig(**cfg)),
                          ("salun (with use_remain)", SalUnConfig(**cfg, use_remain=True))):
        method = name.split()[0]
        ops = counted(lambda: METHODS.get(method).run(copy.deepcopy(model), task, section,
                                                      torch.Generator().manual_seed(0)))
        print(row(f"{name}, a training step (augmentation on)", ops, steps))
    x = images[:128].float() / 255
    model.eval()
    pgd_steps = 10
    print(row("L2 PGD (CPU path, compacting)", counted(
        lambda: pgd.pgd_l2(model, x, labels[:128], eps=0.5, steps=pgd_steps, stop_when_wrong=True)), pgd_steps))
    if hasattr(pgd, "_masked"):
        eps = torch.full((128,), 0.5)
        with torch.enable_grad():
            ops = counted(lambda: pgd._masked(model, x, labels[:128], x.clone(), eps, eps / 10, pgd_steps, True))
        print(row("L2 PGD (accelerator path, masks)", ops, pgd_steps))


if __name__ == "__main__":
    main()
