"""The CPU part of evaluating one model at CIFAR-10 size: what `evaluate` spends per model
after the forward pass, whatever the device.

Synthetic logits of CIFAR-10's shape (50,000 train + 10,000 test, 10 classes; forget 10%
of train) with K reference models, scored exactly as `evaluate` scores a model: the split
metrics (accuracies, losses, SalUn's SVC attack, the loss attack) and RMIA + LiRA with
their intervals. The SVC attack is timed at the cap (`mia.svc_samples`, default 5,000 per
class) and uncapped (SalUn's 10,000 + 10,000), side by side.

    python benchmarks/evaluate_cifar.py            # about 2 minutes on 2 cores
    python benchmarks/evaluate_cifar.py --smoke    # seconds: checks it runs
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def synthetic(train: int, test: int, references: int, seed: int = 0):
    """Logits of a confidently fitted model with a weak membership signal: members get a slightly
    larger true-class margin, so that most confidences crowd near 1 for both (as on CIFAR-10)."""
    rng = np.random.default_rng(seed)
    n = train + test
    labels = rng.integers(0, 10, n)

    def logits_for(member: np.ndarray) -> torch.Tensor:
        raw = rng.normal(size=(n, 10))
        raw[np.arange(n), labels] += np.where(member, 9.0, 7.0) + 2.0 * rng.normal(size=n)  # confident, overlapping
        return torch.as_tensor(raw, dtype=torch.float32)

    target = logits_for(np.arange(n) < train)
    keep = rng.random((references, n)).argsort(axis=0) < references // 2
    reference_logits = torch.stack([logits_for(keep[k]) for k in range(references)])
    forget = rng.choice(train, train // 10, replace=False)
    splits = {"forget": np.sort(forget), "remain": np.setdiff1d(np.arange(train), forget),
              "test": np.arange(train, n)}
    return target, torch.as_tensor(labels), reference_logits, keep, splits


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--references", type=int, default=4)
    args = parser.parse_args()

    from unlearn.config import MiaConfig
    from unlearn.evaluation import split_metrics
    from unlearn.evaluation.mia_svc import mia_svc, true_label_confidence
    from unlearn.evaluation.suite import attack_metrics, attack_scores

    train, test = (2_000, 500) if args.smoke else (50_000, 10_000)
    target, labels, reference_logits, keep, splits = synthetic(train, test, args.references)
    cfg = MiaConfig()
    confidence = {name: true_label_confidence(target[idx], labels[idx]) for name, idx in splits.items()}
    uncapped, uncapped_s = timed(lambda: mia_svc(confidence["remain"], confidence["test"], confidence["forget"]))
    capped, capped_s = timed(lambda: mia_svc(confidence["remain"], confidence["test"], confidence["forget"],
                                             samples=cfg.svc_samples))
    _, split_s = timed(lambda: split_metrics(target, labels, splits, cfg.svc_samples))
    scores, scores_s = timed(lambda: attack_scores(target, reference_logits, keep, labels, splits["test"], cfg, 0))
    _, metrics_s = timed(lambda: attack_metrics(scores, splits, cfg, 0))
    rows = [
        (f"SVC attack, uncapped ({min(test, len(splits['remain'])):,} + {test:,} points)", uncapped_s,
         f"MIA-efficacy {uncapped:.2f}"),
        (f"SVC attack, capped at {cfg.svc_samples:,} per class", capped_s, f"MIA-efficacy {capped:.2f}"),
        ("split metrics (accuracies, losses, capped SVC, loss attack)", split_s, ""),
        (f"RMIA + LiRA scores ({args.references} references)", scores_s, ""),
        ("RMIA + LiRA AUC / TPR with bootstrap intervals", metrics_s, ""),
    ]
    print(f"{torch.get_num_threads()} torch threads, {train + test:,} samples{' (smoke)' if args.smoke else ''}\n")
    print("| part | seconds | note |")
    print("|---|---:|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {seconds:.2f} | {note} |")
    print(f"| **per model, after predict** | **{split_s + scores_s + metrics_s:.2f}** | "
          f"uncapped SVC would add {uncapped_s - capped_s:.2f} |")


if __name__ == "__main__":
    main()
