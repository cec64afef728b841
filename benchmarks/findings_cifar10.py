"""F1 and F4 in a CIFAR-10 regime on 2 CPU cores: the seed study's protocol, RMIA included.

For every seed s, one cell of the study (:func:`unlearn.protocol.prepare_cell`: model
seed s, forget-set seed s, 10% of train forgotten at random): ``--references`` reference
models, each trained on a seeded random half of all images (train and test) with the
original's recipe, then the original and retrained models, D_A, and every method of
``--methods`` with its ``unlearn`` section of ``--params`` (the pipeline's settings);
every model is scored as in the study (accuracies, RMIA and LiRA with the cell's
references, MIA-efficacy, the loss attack) and its Avg Gap to the cell's retrained
model. The table gives mean ± 95% interval over seeds; F1 and F4 are judged by the
rules of :mod:`unlearn.findings`. The first lines state the regime: the original's
train and test accuracy, the retrained model's forget accuracy and seconds per model.

Data: CIFAR-10 from ``--cifar`` (default ``../shared/data/cifar10-jpg.tar.gz``),
a fixed random subset of ``--train`` / ``--test`` images. ``--json`` writes every
seed's numbers after each seed (a long run keeps what it finished).

Besides ``--methods``, every seed runs ``amun_advonly``, the ``advonly`` ablation of AMUN's
code: fine-tuning on D_R u D_A (the remain set and the adversarial examples with their
adversarial labels, without the forget samples themselves) with AMUN's recipe
(``unlearn.amun``), defined in this file (:func:`advonly`) and scored like every method
in the first table (it is an AMUN variant, so F1 leaves it out).

A second table measures AMUN's premises per model (mean ± 95% interval over seeds):

- ``da_adv_label``: % of D_A's examples the model classifies as their adversarial label
  (the original's wrong prediction); ``da_misclassified``: % it gives any label but the
  true one. For the original the first is 100 by construction (the second is 100 minus
  the samples D_A left correct at its largest budget, the regime line ``da_capped``); for
  the retrained model they are the transfer of D_A from the original.
- ``forget_adv_label`` / ``forget_misclassified``: the same on the clean forget images,
  the chance level of the two (for retrain, its forget-set error).
- ``weight_change``: ``||theta - theta_original||_2 / ||theta_original||_2`` in %, over the
  trainable parameters (retrain starts from the original's initialisation, the same seed).
- ``kl_forget`` / ``kl_test``: mean ``KL(p_original || p_model)`` (nats) of the softmax
  outputs over the forget / test samples; ``tv_forget`` / ``tv_test``: mean total variation
  ``0.5 * ||p_original - p_model||_1`` in %. Retrain's row gives the scale.

    python benchmarks/findings_cifar10.py --train 2000 --test 1000 --epochs 60 --batch-size 32 --references 4 \
        --seeds 0,1,2 --json cifar.json
    OMP_NUM_THREADS=2 python benchmarks/findings_cifar10.py --train 2000 --test 1000 --epochs 60 --batch-size 32 \
        --references 4 --seeds 0 --json /tmp/cifar_premises.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from torch.nn import functional as F

from amun import load  # the same fixed CIFAR-10 subset as the AMUN benchmark
from unlearn.checkpoint import EpochCheckpoint
from unlearn.config import load_params
from unlearn.evaluation import accuracy, predict
from unlearn.evaluation.suite import keep_matrix
from unlearn.findings import interval, seed_study_findings
from unlearn.models import create_model
from unlearn.protocol import References, gaps, measure, normalisation, prepare_cell
from unlearn.training import train_, train_mode
from unlearn.unlearning import METHODS

RANDOM_TRACK = [name for name in METHODS.names() if "random" in METHODS.get(name).tracks]
COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia_rmia_auc", "avg_gap", "mia_svc", "avg_gap_svc",
           "mia_loss_auc", "runtime_vs_retrain")
PREMISES = ("da_adv_label", "da_misclassified", "forget_adv_label", "forget_misclassified", "weight_change",
            "kl_forget", "kl_test", "tv_forget", "tv_test")
ABLATIONS = ("amun_advonly",)  # defined here, not in unlearn.unlearning; left out of F1


def study_params(args):
    """The pipeline's params (methods, D_A, attacks) with this regime's data, model and recipe."""
    params = load_params(args.params)
    overrides = {"model": params.model.model_copy(update={"name": "small_cnn", "width": args.width,
                                                          "batch_norm": True}),
                 "train": params.train.model_copy(update={"epochs": args.epochs, "batch_size": args.batch_size,
                                                          "lr": args.lr, "augment": False}),
                 "lipschitz": params.lipschitz.model_copy(update={"method": "none"}),
                 "data": params.data.model_copy(update={"dataset": "cifar10"})}
    return params.model_copy(update=overrides)


def references(images, labels, params, count: int, seed: int) -> tuple[References, float]:
    """``count`` reference models on seeded random halves of all images, with the original's recipe."""
    keep = keep_matrix(count, len(labels), (seed, seed, zlib.crc32(b"cifar10")))
    stats, logits, start = normalisation(images, np.arange(len(labels))), [], time.perf_counter()
    for k in range(count):
        model = create_model("small_cnn", in_channels=images.shape[1], num_classes=int(labels.max()) + 1,
                             seed=100_000 + 100 * seed + k, width=params.model.width, **stats)
        idx = torch.as_tensor(np.flatnonzero(keep[k]))
        train_(model, images[idx], labels[idx], params.train, generator=torch.Generator().manual_seed(k))
        logits.append(predict(model.eval(), images))
    return References(keep, torch.stack(logits)), (time.perf_counter() - start) / count


def advonly(model, task, cfg, generator: torch.Generator) -> None:
    """AMUN's ``advonly`` ablation: fine-tune on D_R u D_A, i.e. the adversarial examples with
    their adversarial labels and the remain set in shuffled batches, without D_F (as
    :func:`unlearn.unlearning.methods._amun` does otherwise; D_A never augmented)."""
    xr, yr = task.split("remain")
    adversarial = task.adversarial
    x, y = torch.cat([adversarial.images.to(xr.device), xr]), torch.cat([adversarial.labels.to(yr.device), yr])
    no_augment = torch.zeros(len(x), dtype=torch.bool)
    no_augment[:len(adversarial.images)] = True
    train_(model, x, y, cfg, generator=generator, no_augment=no_augment)


class KeepModel(EpochCheckpoint):
    """A checkpoint that writes nothing and resumes nothing: it keeps the state
    :func:`unlearn.training.train_` hands it after each epoch, so the last one is the trained
    model's (``prepare_cell`` keeps only the original, this keeps the retrained model too)."""

    def __init__(self) -> None:
        self.state = None

    def load(self) -> None:
        return None

    def save(self, state: dict) -> None:
        self.state = state


def unlearn(cell, name: str, cfg, seed: int) -> tuple[dict, torch.nn.Module]:
    """:func:`unlearn.protocol.run_method` (no clipping) that also returns the unlearned model."""
    if name in ABLATIONS:
        run, needs_adversarial, remain_access = advonly, True, True
    else:
        method = METHODS.get(name)
        run, needs_adversarial, remain_access = method.run, method.needs_adversarial, method.remain_access(cfg)
    model = copy.deepcopy(cell.original)
    start = time.perf_counter()
    run(model, cell.task, cfg, torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - start + (cell.adversarial_s if needs_adversarial else 0.0)
    metrics = measure(predict(model, cell.task.images), cell.task.labels, cell)
    return {**metrics, "runtime_s": seconds, "runtime_vs_retrain": seconds / cell.retrain_s,
            **gaps(metrics, cell.metrics["retrain"]), "remain_access": remain_access}, model.eval()


def float_logits(model, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` in eval mode on float images in [0, 1] (D_A)."""
    with torch.no_grad(), train_mode(model, False):
        return torch.cat([model(chunk) for chunk in x.split(1024)]).float()


def premises(model, original, cell) -> dict[str, float]:
    """AMUN's premises for ``model`` against the cell's ``original`` (see the module docstring)."""
    task, test = cell.task, torch.as_tensor(cell.splits["test"])
    adversarial, true = task.adversarial, task.labels[task.forget]
    on_da = float_logits(model, adversarial.images).argmax(1)
    out = {"da_adv_label": 100.0 * (on_da == adversarial.labels).float().mean().item(),
           "da_misclassified": 100.0 * (on_da != true).float().mean().item()}
    logits, reference = predict(model, task.images), predict(original, task.images)
    on_forget = logits[task.forget].argmax(1)
    out["forget_adv_label"] = 100.0 * (on_forget == adversarial.labels).float().mean().item()
    out["forget_misclassified"] = 100.0 * (on_forget != true).float().mean().item()
    change = sum((p - q).pow(2).sum() for p, q in zip(model.parameters(), original.parameters()))
    size = sum(q.pow(2).sum() for q in original.parameters())
    out["weight_change"] = 100.0 * (change / size).sqrt().item()
    for split, idx in (("forget", task.forget), ("test", test)):
        log_p, log_q = F.log_softmax(reference[idx], 1), F.log_softmax(logits[idx], 1)
        out[f"kl_{split}"] = (log_p.exp() * (log_p - log_q)).sum(1).mean().item()
        out[f"tv_{split}"] = 100.0 * 0.5 * (log_p.exp() - log_q.exp()).abs().sum(1).mean().item()
    return out


def one_seed(images, labels, test_start, params, args, seed: int) -> tuple[dict, dict]:
    refs, reference_s = references(images, labels, params, args.references, seed)
    start = time.perf_counter()
    kept = {}
    cell = prepare_cell(images, labels, test_start, params, seed, seed, references=refs,
                        checkpoint=lambda name, indices: kept.setdefault(name, KeepModel()))
    retrained = copy.deepcopy(cell.original)
    retrained.load_state_dict(kept["retrain"].state["model"])
    train = torch.as_tensor(cell.splits["train"])
    adversarial = cell.task.adversarial
    regime = {"original_train_acc": accuracy(predict(cell.original, images[train]), labels[train]),
              "original_test_acc": cell.metrics["original"]["test_acc"],
              "retrain_forget_acc": cell.metrics["retrain"]["forget_acc"], "retrain_s": cell.retrain_s,
              "reference_s": reference_s, "cell_s": time.perf_counter() - start,
              "da_size": len(adversarial.labels), "da_capped": int(adversarial.capped.sum()),
              "da_median_distance": adversarial.distance.median().item()}
    retrain = cell.metrics["retrain"]
    results = {"retrain": {**retrain, "avg_gap": 0.0, "avg_gap_svc": 0.0, "runtime_vs_retrain": 1.0,
                           **premises(retrained, cell.original, cell)},
               "original": {**cell.metrics["original"], **gaps(cell.metrics["original"], retrain),
                            **premises(cell.original, cell.original, cell)}}
    for name in [*args.methods, *ABLATIONS]:
        cfg = getattr(params.unlearn, "amun" if name in ABLATIONS else name)
        metrics, model = unlearn(cell, name, cfg, seed)
        results[name] = {**metrics, **premises(model, cell.original, cell)}
    return results, regime


def table(per_seed: dict[int, dict], columns, title: str = "model") -> None:
    """One row per model, ``mean ± 95% interval`` over seeds per column."""
    seeds = list(per_seed)
    print(f"| {title} | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for name in per_seed[seeds[0]]:
        cells = []
        for key in columns:
            values = [per_seed[s][name].get(key) for s in seeds]
            cells.append("-" if None in values else f"{interval(values)['mean']:.2f} ± {interval(values)['ci95']:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def report(per_seed: dict[int, dict], regimes: dict[int, dict], rules) -> None:
    seeds = list(per_seed)
    for key in regimes[seeds[0]]:
        print(f"# {key}: " + ", ".join(f"{regimes[s][key]:.2f}" for s in seeds))
    table(per_seed, COLUMNS)
    print("\nAMUN's premises: D_A (and the clean forget images) classified as D_A's adversarial label / as "
          "anything but the true label (%), weight change from the original (% of its norm), "
          "KL(original || model) (nats) and total variation (%) on the forget and test sets\n")
    table(per_seed, PREMISES)
    models = [name for name in per_seed[seeds[0]] if name not in ABLATIONS]
    findings = seed_study_findings({name: [per_seed[s][name] for s in seeds] for name in models},
                                   rules.margins, rules.alpha)
    for key, finding in findings.items():
        print(f"\n{key} ({finding['holds']}): {finding['claim']}. {finding['why']}")
        for name, d in finding["evidence"]["differences"].items():
            print(f"  {name}: {d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar", default="../shared/data/cifar10-jpg.tar.gz")
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--width", type=int, default=32, help="small_cnn width")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--references", type=int, default=4)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(RANDOM_TRACK))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write every seed's results here")
    args = parser.parse_args()
    args.dataset = "cifar10"
    args.methods = args.methods.split(",")
    torch.set_num_threads(args.threads)
    images, labels, test_start = load(args)
    params = study_params(args)
    per_seed, regimes = {}, {}
    for seed in map(int, args.seeds.split(",")):
        per_seed[seed], regimes[seed] = one_seed(images, labels, test_start, params, args, seed)
        print(f"# seed {seed} done: {json.dumps({k: round(v, 2) for k, v in regimes[seed].items()})}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "regimes": regimes, "results": per_seed},
                                                  indent=1, default=float))
    report(per_seed, regimes, params.findings)


if __name__ == "__main__":
    main()
