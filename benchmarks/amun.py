"""AMUN and its baselines against retraining, averaged over seeds (AMUN's Table 1 layout).

For every seed: a seeded split (10 % of train forgotten at random), an original model
trained on train and a retrained model on remain with the same recipe, AMUN's
adversarial set D_A (eps_init as the pipeline chooses it), then every method of
``unlearn.unlearning.METHODS`` from a copy of the original, with the settings of the
project's ``params.yaml`` (``unlearn.<method>`` and ``adversarial``; ``--set method.key=value``
overrides a method's setting).
Columns: forget / remain / test accuracy and MIA-efficacy (SVC) in percent, Avg Gap to
the retrained model of the same seed over those four (SalUn's variant: the RMIA
variant needs reference models per seed, which this CPU benchmark does not train), the
loss attack's AUC (forget vs test) and runtime relative to retraining (AMUN's includes
building D_A); mean +- std over seeds. ``--json`` also writes every seed's numbers. The first lines state the regime: the
original model's train and test accuracy and the retrained model's forget accuracy.

Data: ``digits`` (embedded) or ``cifar10`` from ``--cifar`` (default
``../shared/data/cifar10-jpg.tar.gz``), subsampled to ``--train`` / ``--test`` images
(a fixed random subset). ``--lipschitz T`` trains original and retrain with FastClip
at target T (the smooth-model table); unlearning itself is not clipped.

``--eps-table`` instead compares D_A's starting budget on the pipeline's original model
(``data/models/original.pt`` and the forget split of ``data/prepared``, read only): the
fixed ``eps_init`` of AMUN's code (0.04, L2 in [0, 1] pixels), the calibrated one
(``eps_init: null``) and a plain re-implementation of the loop of AMUN's attack
(``pgdl2_modified.PGDL2``: no cap, a sample already misclassified is reported at
eps_init); per row the samples per budget, the median distance and the seconds.

    python benchmarks/amun.py --dataset digits --epochs 40 --seeds 0,1,2
    python benchmarks/amun.py --dataset cifar10 --train 2000 --test 1000 --epochs 60 --batch-size 32 --seeds 0,1,2
    python benchmarks/amun.py --eps-table
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from unlearn.attacks import adversarial_set, choose_eps_init
from unlearn.config import AdversarialConfig, ForgetConfig, TrainConfig, load_params
from unlearn.data import load_dataset, make_splits
from unlearn.evaluation import accuracy, avg_gap, predict, split_metrics
from unlearn.evaluation.gap import SVC_KEYS
from unlearn.models import create_model
from unlearn.training import to_float, train_
from unlearn.unlearning import METHODS, ForgetTask

RANDOM_TRACK = [name for name in METHODS.names() if "random" in METHODS.get(name).tracks]
COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia_svc", "avg_gap", "mia_loss_auc", "runtime_vs_retrain")


def load(args) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Images, labels and where the test part starts, subsampled to --train / --test."""
    if args.dataset == "digits":
        data = load_dataset("digits")
        return data.images, data.labels, None
    data = load_dataset("cifar10", path=args.cifar, cache_dir=Path("data/cache"))
    rng = np.random.default_rng(1234)
    train = np.sort(rng.choice(data.test_start, size=args.train, replace=False))
    test = np.sort(data.test_start + rng.choice(len(data.labels) - data.test_start, size=args.test, replace=False))
    idx = torch.as_tensor(np.concatenate([train, test]))
    return data.images[idx], data.labels[idx], args.train


def fit(images, labels, idx, recipe, args, seed, mean, std, num_classes) -> tuple[torch.nn.Module, float]:
    model = create_model(args.model, in_channels=images.shape[1], num_classes=num_classes, mean=mean, std=std,
                         seed=seed, width=args.width)
    callbacks = []
    if args.lipschitz:
        from unlearn.lipschitz import FastClip

        callbacks = [FastClip(model, images.shape[1:], target=args.lipschitz, clip_every=50, seed=seed)]
    start = time.perf_counter()
    train_(model, images[idx], labels[idx], recipe, generator=torch.Generator().manual_seed(seed), callbacks=callbacks)
    return model.eval(), time.perf_counter() - start


def one_seed(images, labels, test_start, seed, args, settings, attack) -> tuple[dict, dict]:
    split = make_splits(labels.numpy(), seed=seed, forget=ForgetConfig(fraction=args.forget), test_start=test_start)
    splits = split.as_dict()
    pixels = to_float(images[torch.as_tensor(split.train)])
    mean, std = pixels.mean(dim=(0, 2, 3)).tolist(), pixels.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    num_classes = int(labels.max()) + 1
    recipe = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, augment=args.augment)
    train_idx, remain_idx = torch.as_tensor(split.train), torch.as_tensor(split.remain)
    original, _ = fit(images, labels, train_idx, recipe, args, seed, mean, std, num_classes)
    retrained, retrain_s = fit(images, labels, remain_idx, recipe, args, seed, mean, std, num_classes)
    regime = {"original_train_acc": accuracy(predict(original, images[train_idx]), labels[train_idx]),
              "retrain_s": retrain_s}
    results = {}
    for name, model in (("original", original), ("retrain", retrained)):
        results[name] = split_metrics(predict(model, images), labels, splits)
    reference = results["retrain"]
    forget = torch.as_tensor(split.forget)
    x, y = to_float(images[forget]), labels[forget]
    start = time.perf_counter()
    eps_init = choose_eps_init(original, x, y, attack, seed)
    found = adversarial_set(original, x, y, eps_init=eps_init, steps=attack.steps, max_doublings=attack.max_doublings)
    adversarial_s = time.perf_counter() - start
    regime.update(eps_init=eps_init, adversarial_s=adversarial_s, capped=int(found.capped.sum()))
    task = ForgetTask(images, labels, forget, remain_idx, num_classes, found)
    for name in args.methods:
        method = METHODS.get(name)
        model = copy.deepcopy(original)
        start = time.perf_counter()
        method.run(model, task, settings[name], torch.Generator().manual_seed(seed))
        seconds = time.perf_counter() - start + (adversarial_s if method.needs_adversarial else 0.0)
        results[name] = {**split_metrics(predict(model, images), labels, splits), "runtime_vs_retrain": seconds / retrain_s,
                         "remain_access": method.remain_access(settings[name])}
    for metrics in results.values():
        metrics["avg_gap"] = avg_gap(metrics, reference, SVC_KEYS)
    results["retrain"]["runtime_vs_retrain"] = 1.0
    return results, regime


AMUN_EPS_INIT = 0.04  # pgdl2_modified.PGDL2's default in AMUN's code (images in [0, 1], no normalisation)


def amun_code_attack(model, images, labels, eps_init: float = AMUN_EPS_INIT, steps: int = 50,
                     max_rounds: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop of AMUN's attack, written plainly: every step first drops the samples the model
    already misclassifies (keeping their budget), then moves the rest by eps / 10 along their
    unit-L2 gradient, projects onto the eps-ball and clamps to [0, 1]; after ``steps`` steps the
    budget of the samples still correct doubles and they continue from where they are. Unlike
    :func:`unlearn.attacks.adversarial_set`, a sample misclassified from the start reports
    ``eps_init`` (not 0); ``max_rounds`` only guards against an endless loop. ``model`` in
    eval mode, on the CPU. Returns the budget (N,) and the L2 distance (N,) of each sample."""
    x_adv, eps = images.clone(), torch.full((len(images),), eps_init)
    active = torch.arange(len(images))
    for _ in range(max_rounds):
        for _ in range(steps):
            if len(active) == 0:
                break
            x = x_adv[active].clone().requires_grad_(True)
            logits = model(x)
            keep = logits.argmax(1) == labels[active]
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels[active]), x)
            active, x, grad = active[keep], x[keep].detach(), grad[keep]
            budget = eps[active].view(-1, 1, 1, 1)
            step = grad / (grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10)
            delta = x + budget / 10 * step - images[active]
            scale = (budget.flatten() / delta.flatten(1).norm(dim=1)).clamp(max=1.0).view(-1, 1, 1, 1)
            x_adv[active] = (images[active] + delta * scale).clamp(0, 1)
        if len(active) == 0:
            break
        with torch.no_grad():
            active = active[model(x_adv[active]).argmax(1) == labels[active]]
        eps[active] *= 2
    return eps, (x_adv - images).flatten(1).norm(dim=1)


def eps_init_rows(model, images, labels, attack: AdversarialConfig, seed: int) -> list[dict]:
    """D_A from AMUN's fixed eps_init, from the calibrated one, and AMUN's loop itself."""
    rows = []
    for name, eps_init in (("eps_init 0.04 (AMUN's code)", AMUN_EPS_INIT), ("eps_init null (calibrated)", None)):
        cfg = attack.model_copy(update={"eps_init": eps_init})
        start = time.perf_counter()
        chosen = choose_eps_init(model, images, labels, cfg, seed)
        calibration_s = time.perf_counter() - start
        found = adversarial_set(model, images, labels, eps_init=chosen, steps=cfg.steps,
                                max_doublings=cfg.max_doublings, batch_size=cfg.batch_size)
        rows.append({"row": name, "eps_init": chosen, "eps": found.eps.cpu(), "distance": found.distance.cpu(),
                     "capped": int(found.capped.sum()), "seconds": time.perf_counter() - start,
                     "calibration_s": calibration_s})
    start = time.perf_counter()
    eps, distance = amun_code_attack(model, images, labels, steps=attack.steps)
    rows.append({"row": "AMUN's attack loop, 0.04", "eps_init": AMUN_EPS_INIT, "eps": eps, "distance": distance,
                 "capped": 0, "seconds": time.perf_counter() - start, "calibration_s": 0.0})
    return rows


def print_eps_table(rows: list[dict]) -> None:
    print("| D_A | eps_init | samples per budget | median distance | capped | seconds (calibration) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        budgets, counts = torch.unique(r["eps"], return_counts=True)
        histogram = ", ".join(f"{b:.3g}: {c}" for b, c in zip(budgets.tolist(), counts.tolist()))
        print(f"| {r['row']} | {r['eps_init']:.4g} | {histogram} | {r['distance'].median().item():.4f} | "
              f"{r['capped']} | {r['seconds']:.2f} ({r['calibration_s']:.2f}) |")


def eps_table_on_pipeline_model(params_file: str) -> None:
    """:func:`eps_init_rows` on the pipeline's original model and forget set (files read only)."""
    from unlearn_pipeline.common import load_prepared
    from unlearn_pipeline.model_store import load_model

    params = load_params(params_file)
    data = load_prepared()
    model = load_model("original", params, data.meta).eval()
    forget = torch.as_tensor(data.splits["forget"])
    x, y = to_float(data.images[forget]), data.labels[forget]
    print(f"{data.meta['dataset']}: {len(forget)} forget samples of shape {tuple(x.shape[1:])}, {params.model.name}; "
          f"steps {params.adversarial.steps}, max_doublings {params.adversarial.max_doublings}, "
          f"{torch.get_num_threads()} threads\n")
    print_eps_table(eps_init_rows(model, x, y, params.adversarial, params.seed))


def settings_from(args, section: str = "unlearn", names=RANDOM_TRACK) -> dict:
    """Each method's settings from ``params.yaml``'s ``section``, with ``--set`` overrides."""
    params = getattr(load_params(args.params), section)
    settings = {name: getattr(params, name) for name in names}
    for item in args.set:
        key, value = item.split("=", 1)
        name, field = key.split(".", 1)
        current = getattr(settings[name], field)
        settings[name] = settings[name].model_copy(update={field: type(current)(value)})
    return settings


def cell(values: list[float], digits: int = 2) -> str:
    """``mean ± std`` over seeds (the value alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The data, model and original / retrain recipe options both benchmarks share."""
    parser.add_argument("--dataset", choices=("digits", "cifar10"), default="digits")
    parser.add_argument("--cifar", default="../shared/data/cifar10-jpg.tar.gz")
    parser.add_argument("--train", type=int, default=4000, help="cifar10: train images used")
    parser.add_argument("--test", type=int, default=1000, help="cifar10: test images used")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=128, help="original and retrain")
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--lipschitz", type=float, default=None, help="FastClip target for original and retrain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser)
    parser.add_argument("--forget", type=float, default=0.1)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(RANDOM_TRACK))
    parser.add_argument("--set", action="append", default=[], help="override, e.g. --set amun.lr=0.05")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write every seed's results here")
    parser.add_argument("--eps-table", action="store_true",
                        help="only compare D_A's eps_init on the pipeline's original model (see above)")
    args = parser.parse_args()
    args.methods = args.methods.split(",")
    torch.set_num_threads(args.threads)
    if args.eps_table:
        eps_table_on_pipeline_model(args.params)
        return
    settings = settings_from(args)
    attack = load_params(args.params).adversarial
    images, labels, test_start = load(args)
    per_seed, regimes = [], []
    for seed in map(int, args.seeds.split(",")):
        start = time.perf_counter()
        results, regime = one_seed(images, labels, test_start, seed, args, settings, attack)
        per_seed.append(results)
        regimes.append(regime)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "seeds": per_seed, "regimes": regimes},
                                                  indent=1, default=str))
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s, " + ", ".join(f"{k} {v:.3g}" for k, v in regime.items()),
              flush=True)
    print(f"\n{args.dataset}: {len(labels)} images, {args.model} width {args.width or 'default'}, {args.epochs} epochs, "
          f"batch {args.batch_size}, augment {args.augment}, lipschitz {args.lipschitz}; {len(per_seed)} seeds")
    print(f"regime: original train acc {cell([r['original_train_acc'] for r in regimes])}, original test acc "
          f"{cell([s['original']['test_acc'] for s in per_seed])}, retrain forget acc "
          f"{cell([s['retrain']['forget_acc'] for s in per_seed])}, retrain {cell([r['retrain_s'] for r in regimes])} s\n")
    for access, title in ((True, "with remain access"), (False, "without remain access")):
        rows = ["retrain", "original"] if access else ["retrain"]
        rows += [n for n in args.methods if per_seed[0][n]["remain_access"] == access]
        print(f"| {title} | " + " | ".join(COLUMNS) + " |")
        print("|---" * (len(COLUMNS) + 1) + "|")
        for name in rows:
            cells = [cell([s[name][c] for s in per_seed]) if c in per_seed[0][name] else "-" for c in COLUMNS]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
