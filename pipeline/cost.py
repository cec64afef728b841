"""What a params setting costs to run: ``unlearn preset NAME --cost``.

Work is counted from the params alone, in **epoch-equivalents** (E): images that go
through a training step (forward + backward), divided by 50,000 (one CIFAR-10 epoch).
A PGD step on one image (a forward and an input-gradient backward) counts as one such
image, a forward pass alone as a third of one. Time is E times a measured seconds per
epoch (``benchmarks/gpu_check.py`` measures it at the presets' batch sizes), plus the
parts that run on the CPU whatever the device, from a measured per-model cost.

Assumptions, stated because no count from params alone can know them:

* D_A: each forget sample runs ``adversarial.steps`` PGD steps ``DA_ROUNDS`` times (its
  first budget and one doubling), an upper estimate for a trained model (a sample leaves
  as soon as it is misclassified; samples already misclassified cost nothing).
* Every unlearning run of a method over a shadow model costs what it costs on the
  target model (the shadows' splits have the target's sizes).
* One-off passes (SalUn's saliency, boundary shrink's FGSM labels, TRW's targets,
  SCRUB's teacher) count one forward + backward over the forget set.
* Each stage is a process: ``STAGE_S`` seconds for the interpreter, imports, CUDA's
  start and loading the prepared data (5.5 s of it measured on 2 CPU cores for a
  near-empty stage, ``benchmarks/bench_stage_overhead.py``; the rest estimated).
"""

from __future__ import annotations

from dataclasses import dataclass

EPOCH_IMAGES = 50_000
DA_ROUNDS = 2
STAGE_S = 8.0
FIXED_STAGES = 13  # dvc.yaml's stages besides the unlearn@ / unlearn_class@ ones
CIFAR10 = {"train": 50_000, "test": 10_000, "classes": 10}
FORGET_FREE = {"ft", "l1_sparse"}  # methods that never train on the forget set


@dataclass(frozen=True)
class Part:
    name: str
    epochs: float  # epoch-equivalents (E)


def _method_images(name: str, cfg, forget: float, remain: float) -> float:
    """Images trained on by one run of unlearning method ``name`` with section ``cfg``."""
    from unlearn.unlearning import METHODS

    spec = METHODS.get(name)
    if name == "scrub":
        return cfg.epochs * remain + cfg.max_epochs * forget + forget
    if name == "ssd":  # no training: one gradient pass over the forget set and one over all of train
        return 2 * forget + remain
    if name == "neggrad_plus":  # a forget batch beside every remain batch
        return cfg.epochs * remain * (1 + (cfg.forget_batch_size or cfg.batch_size) / cfg.batch_size)
    if name == "unsir":  # impair on the noise and the kept subset, repair on the subset (noise steps: negligible)
        kept = min(remain, cfg.remain_per_class * CIFAR10["classes"])
        return cfg.epochs * (kept + cfg.noise_copies * cfg.noise_samples) + cfg.repair_epochs * kept
    per_epoch = 0.0 if name in FORGET_FREE else forget
    if spec.remain_access(cfg):
        per_epoch += remain
    if spec.needs_adversarial:
        per_epoch += forget  # the D_A rows
    one_off = 0.0 if name in FORGET_FREE or name in ("ga", "rl", "ft") else forget
    return cfg.epochs * per_epoch + one_off


def pipeline_parts(params, sizes: dict | None = None) -> list[Part]:
    """The default graph's GPU work (``dvc repro`` of dvc.yaml) for ``params`` (a validated
    :class:`unlearn.config.Params`), on a dataset of ``sizes`` (default CIFAR-10's)."""
    sizes = sizes or CIFAR10
    n, test = sizes["train"], sizes["test"]
    forget = params.data.forget.fraction * n if params.data.forget.fraction else float(params.data.forget.count or 0)
    remain = n - forget
    class_forget = n / sizes["classes"]
    class_remain = n - class_forget
    epochs = params.train.epochs
    shadows = params.ulira.shadows
    ref_epochs = params.references.epochs or epochs
    parts = [Part("original", epochs * n / EPOCH_IMAGES)]
    if params.retrain.enabled:
        parts.append(Part("retrain", epochs * remain / EPOCH_IMAGES))
    parts.append(Part(f"references (K = {params.references.K}, half of train + test each)",
                      params.references.K * ref_epochs * (n + test) / 2 / EPOCH_IMAGES))
    if shadows:
        parts.append(Part(f"U-LiRA shadows ({shadows} x original + retrain, both tracks)",
                          shadows * epochs * (n + remain + n + class_remain) / EPOCH_IMAGES))
    from unlearn.unlearning import METHODS

    da_runs = 0
    for name in params.unlearn.methods:
        cfg = getattr(params.unlearn, name)
        parts.append(Part(f"unlearn@{name} (x {1 + shadows})",
                          (1 + shadows) * _method_images(name, cfg, forget, remain) / EPOCH_IMAGES))
        da_runs += shadows if METHODS.get(name).needs_adversarial else 0
    da_per_build = forget * params.adversarial.steps * DA_ROUNDS / EPOCH_IMAGES
    parts.append(Part(f"D_A builds ({1 + da_runs} x {params.adversarial.steps} steps x {DA_ROUNDS} rounds)",
                      (1 + da_runs) * da_per_build))
    parts.append(Part(f"class track: retrain x {params.class_track.retrain_seeds}",
                      params.class_track.retrain_seeds * epochs * class_remain / EPOCH_IMAGES))
    for name in params.unlearn_class.methods:
        cfg = getattr(params.unlearn_class, name)
        parts.append(Part(f"unlearn_class@{name} (x {1 + shadows})",
                          (1 + shadows) * _method_images(name, cfg, class_forget, class_remain) / EPOCH_IMAGES))
    models = evaluated_models(params)
    parts.append(Part(f"predictions ({models} models x train + test, forward only)",
                      models * (n + test) / 3 / EPOCH_IMAGES))
    return parts


def random_models(params) -> int:
    """The random track's evaluated models: original, retrain and each method's."""
    return 2 + len(params.unlearn.methods)


def evaluated_models(params) -> int:
    """Models whose metrics run on the CPU: every random-track and class-track model."""
    return random_models(params) + params.class_track.retrain_seeds + 1 + len(params.unlearn_class.methods)


def stage_count(params) -> int:
    return FIXED_STAGES + len(params.unlearn.methods) + len(params.unlearn_class.methods)


def cost_table(params, s_per_epoch: float, cpu_s_per_model: float) -> tuple[str, float]:
    """A markdown table of every part's E and time, and the total in seconds (the random
    track's CPU attacks spread over ``execution.workers`` processes; ``evaluate_class``
    measures its models one after another)."""
    workers = params.execution.workers
    parts = pipeline_parts(params)
    rows = [(part.name, part.epochs, part.epochs * s_per_epoch) for part in parts]
    class_models = evaluated_models(params) - random_models(params)
    cpu = (random_models(params) / workers + class_models) * cpu_s_per_model
    stages = stage_count(params) * STAGE_S
    total = sum(seconds for _, _, seconds in rows) + cpu + stages
    lines = ["| part | epoch-equivalents | minutes |", "|---|---:|---:|"]
    lines += [f"| {name} | {epochs:.1f} | {seconds / 60:.1f} |" for name, epochs, seconds in rows]
    lines.append(f"| CPU: attacks on {evaluated_models(params)} models ({cpu_s_per_model:g} s each; the "
                 f"{random_models(params)} of the random track on {workers} worker{'s' if workers > 1 else ''}) "
                 f"| - | {cpu / 60:.1f} |")
    lines.append(f"| stage processes ({stage_count(params)} x {STAGE_S:g} s) | - | {stages / 60:.1f} |")
    lines.append(f"| **total** ({sum(e for _, e, _ in rows):.0f} E at {s_per_epoch:g} s/epoch) | "
                 f"**{sum(e for _, e, _ in rows):.0f}** | **{total / 60:.1f}** ({total / 3600:.2f} h) |")
    return "\n".join(lines), total
