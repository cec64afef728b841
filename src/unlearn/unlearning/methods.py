"""The unlearning methods, each a few lines over the shared training loop
(:func:`unlearn.training.train_`): they differ only in the data, labels, per-sample
loss signs, penalty and weight mask they hand to it.

Every method fine-tunes the original model in place with the SGD recipe of its
``params.yaml`` section (``unlearn.<method>``). Choices where the papers or their code
leave something open are stated per method and are parameters where they matter.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from unlearn.device import exact_forward, forward, model_device, move, to_batch
from unlearn.training import Callback, train_, train_mode
from unlearn.unlearning.base import ForgetTask, register
from unlearn.unlearning.salun import FreezeOutsideMask, saliency_mask


def _with_remain(task: ForgetTask, x: torch.Tensor, y: torch.Tensor, use_remain: bool):
    """``x, y`` followed by the remain set's images and labels when ``use_remain``."""
    if not use_remain:
        return x, y
    xr, yr = task.split("remain")
    return torch.cat([x, move(xr, x.device)]), torch.cat([y, move(yr, y.device)])


class RandomWrongLabels(Callback):
    """Before every epoch, give rows ``rows`` of ``labels`` (in place) a uniformly random
    class other than their true one (as AMUN's code does; SalUn's may draw the true one)."""

    def __init__(self, labels: torch.Tensor, rows: torch.Tensor, true: torch.Tensor, num_classes: int,
                 generator: torch.Generator) -> None:
        self.labels, self.rows, self.true = labels, rows, true
        self.num_classes, self.generator = num_classes, generator

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        shift = torch.randint(1, self.num_classes, (len(self.rows),), generator=self.generator)
        self.labels[self.rows] = (self.true + move(shift, self.true.device)) % self.num_classes


@register("ft", always_remain=True)
def finetune(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """FT: fine-tune on the remain set alone (catastrophic forgetting of the rest)."""
    train_(model, *task.split("remain"), cfg, generator=generator)


def _random_label(model, task, cfg, generator, callbacks=()) -> None:
    xf, yf = task.split("forget")
    x, y = _with_remain(task, xf, yf.clone(), cfg.use_remain)
    relabel = RandomWrongLabels(y, torch.arange(len(xf)), yf, task.num_classes, generator)
    train_(model, x, y, cfg, generator=generator, callbacks=[relabel, *callbacks])


@register("rl")
def random_label(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """RL (Golatkar et al. 2020; as in SalUn): forget samples get a random wrong label,
    redrawn every epoch, mixed with the remain set in shuffled batches when ``use_remain``."""
    _random_label(model, task, cfg, generator)


@register("ga")
def gradient_ascent(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """GA (Thudi et al. 2022): ascend the cross-entropy of the forget set. With
    ``use_remain`` ("NegGrad+"), remain samples are descended in the same shuffled
    batches (AMUN's code alternates a remain pass and a forget pass instead)."""
    xf, yf = task.split("forget")
    x, y = _with_remain(task, xf, yf, cfg.use_remain)
    weights = torch.ones(len(x))
    weights[: len(xf)] = -1.0
    train_(model, x, y, cfg, generator=generator, sample_weights=weights)


def l1_weight(alpha: float, epoch: int, epochs: int, schedule: str) -> float:
    """The L1 penalty weight of l1-sparse in ``epoch`` (1..epochs).

    ``linear``: ``alpha * (1 - (epoch - 1) / epochs)`` (the paper's decay, as SalUn's code).
    ``compounding``: ``alpha * prod_{j=0}^{epoch-2} (2 - 2 j / epochs)``, i.e. AMUN's code,
    which multiplies the weight by ``2 - 2 j / epochs`` at the end of its (0-based) epoch j.
    """
    if schedule == "linear":
        return alpha * (1 - (epoch - 1) / epochs)
    if schedule == "compounding":
        weight = alpha
        for j in range(epoch - 1):
            weight = (2 - 2 * j / epochs) * weight
        return weight
    raise ValueError(f"alpha schedule {schedule!r} must be one of: linear, compounding")


class L1Gradient(Callback):
    """Adds the gradient of ``weights[epoch - 1] * ||theta||_1``, i.e. ``w * sign(theta)``,
    to every trainable parameter's gradient before each step: two foreach ops over all
    parameters instead of a penalty term that autograd would build and differentiate
    parameter by parameter (about 680 ops per step on ResNet-18). The result is
    bit-identical: autograd adds the same ``w * sign(theta)`` (exact: sign is -1, 0 or 1) to
    the loss gradient in one rounding."""

    def __init__(self, model: nn.Module, weights: list[float]) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.weights = weights

    def before_step(self, model: nn.Module, epoch: int) -> None:
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        with torch.no_grad():
            torch._foreach_add_([p.grad for p in self.params], torch._foreach_sign(self.params),
                                alpha=self.weights[epoch - 1])


@register("l1_sparse", always_remain=True, tracks=("random",))
def l1_sparse(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """l1-sparse (Jia et al., NeurIPS 2023): FT plus ``alpha_t * ||theta||_1`` over every
    trainable parameter, with ``alpha_t`` = :func:`l1_weight` (``cfg.alpha_schedule``),
    applied as its gradient (:class:`L1Gradient`)."""
    weights = [l1_weight(cfg.alpha, t, cfg.epochs, cfg.alpha_schedule) for t in range(1, cfg.epochs + 1)]
    train_(model, *task.split("remain"), cfg, generator=generator, callbacks=[L1Gradient(model, weights)])


@register("salun")
def salun(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """SalUn (Fan et al., ICLR 2024): RL restricted to the ``mask_fraction`` most salient
    weights (see :mod:`unlearn.unlearning.salun`); the others stay bit-identical."""
    mask = saliency_mask(model, *task.split("forget"), cfg.mask_fraction)
    _random_label(model, task, cfg, generator, callbacks=[FreezeOutsideMask(model, mask)])


@register("bs")
def boundary_shrink(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """Boundary shrink (Chen et al., CVPR 2023): each forget sample is relabelled with the
    original model's prediction on its FGSM neighbour (L-inf step ``fgsm_eps`` on the true
    label's loss, pixels rounded to 1/255; the true label is not excluded, as in the
    authors' code) and the model is fine-tuned on the clean sample with that label."""
    xf, yf = task.split("forget")
    neighbours = _fgsm_labels(copy.deepcopy(model), xf, yf, cfg.fgsm_eps, cfg.batch_size)
    train_(model, *_with_remain(task, xf, neighbours, cfg.use_remain), cfg, generator=generator)


def _fgsm_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, batch_size: int) -> torch.Tensor:
    labels = []
    device = model_device(model)
    with train_mode(model, False):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            xb = to_batch(xb, device).clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(forward(model, xb), move(yb, device), reduction="sum"), xb)
            moved = torch.round((xb.detach() + eps * grad.sign()).clamp(0, 1) * 255) / 255
            with torch.no_grad():
                labels.append(exact_forward(model, moved).argmax(1))
    return torch.cat(labels)


def _amun(model, task, cfg, generator, use_remain: bool, callbacks=()) -> None:
    adversarial = task.adversarial
    if adversarial is None:
        raise ValueError("AMUN needs the adversarial set of the forget set (task.adversarial)")
    xf, yf = task.split("forget")
    found = ~adversarial.capped  # a capped sample has no adversarial example: no D_A row
    images, labels = adversarial.images[found], adversarial.labels[found]
    x, y = _with_remain(task, torch.cat([xf, move(images, xf.device)]),
                        torch.cat([move(yf, labels.device), labels]), use_remain)
    no_augment = torch.zeros(len(x), dtype=torch.bool)
    no_augment[len(xf):len(xf) + len(images)] = True  # D_A rows
    train_(model, x, y, cfg, generator=generator, no_augment=no_augment, callbacks=list(callbacks))


@register("amun", needs_adversarial=True, always_remain=True, tracks=("random",))
def amun(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """AMUN (Ebrahimpour-Boroojeny et al., ICML 2025): fine-tune on D_R u D_F u D_A, i.e. the
    forget samples with their true labels, their adversarial examples labelled with the
    original model's (wrong) prediction, and the remain set, all in shuffled batches.
    Augmentation (when on) applies to D_R and D_F, never to D_A, as in the authors' code.

    A forget sample whose search found no adversarial example up to the cap (``capped``)
    gets no D_A row (an x_adv still labelled with its true class would teach the opposite
    of AMUN's aim) and keeps its D_F row: the paper defines D_A only where an adversarial
    example exists, and such a sample's cross-entropy is about 0, so its D_F row barely
    moves the model. The authors' code doubles eps until every sample is misclassified."""
    _amun(model, task, cfg, generator, use_remain=True)


@register("amun_no_remain", needs_adversarial=True, always_remain=False, tracks=("random",))
def amun_no_remain(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """AMUN without remain access: fine-tune on D_F u D_A only."""
    _amun(model, task, cfg, generator, use_remain=False)


@register("amun_salun", needs_adversarial=True, tracks=("random",))
def amun_salun(model: nn.Module, task: ForgetTask, cfg, generator: torch.Generator) -> None:
    """AMUN restricted to SalUn's ``mask_fraction`` most salient weights (AMUN, App. D)."""
    mask = saliency_mask(model, *task.split("forget"), cfg.mask_fraction)
    _amun(model, task, cfg, generator, cfg.use_remain, callbacks=[FreezeOutsideMask(model, mask)])
