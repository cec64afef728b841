"""Baselines that need more than the shared training loop: boundary expanding (a shadow
class; class track) and SCRUB (a teacher-student game; both tracks)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from unlearn.device import exact_forward, forward, gather, model_device
from unlearn.training import make_optimizer, train_, train_mode
from unlearn.unlearning.base import register
from unlearn.unlearning.trw import final_linear


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return
    raise ValueError("module not found in the model")


@register("be", tracks=("class",))
def boundary_expanding(model: nn.Module, task, cfg, generator: torch.Generator) -> None:
    """Boundary expanding (Chen et al., CVPR 2023): the classifier gets one extra "shadow"
    output, every forget sample is labelled with it and the model is fine-tuned on them
    (with the remain set when ``cfg.use_remain``); the shadow output is then removed, so
    the forget samples' evidence lands on whatever the shrunken head says. The shadow
    row is initialised like PyTorch initialises a Linear layer, from ``generator``."""
    head = final_linear(model)
    num_classes = head.out_features
    expanded = nn.Linear(head.in_features, num_classes + 1, bias=head.bias is not None, device=head.weight.device)
    with torch.no_grad():  # the shadow row is drawn on the CPU (the generator's device), then placed
        bound = 1.0 / head.in_features ** 0.5
        expanded.weight[:num_classes] = head.weight
        expanded.weight[num_classes] = torch.empty(head.in_features).uniform_(-bound, bound, generator=generator)
        if head.bias is not None:
            expanded.bias[:num_classes] = head.bias
            expanded.bias[num_classes] = torch.empty(()).uniform_(-bound, bound, generator=generator)
    _replace(model, head, expanded)
    xf, _ = task.split("forget")
    x, y = xf, torch.full((len(xf),), num_classes, dtype=torch.int64)
    if cfg.use_remain:
        xr, yr = task.split("remain")
        x, y = torch.cat([x, xr]), torch.cat([y, yr])
    train_(model, x, y, cfg, generator=generator)
    pruned = nn.Linear(head.in_features, num_classes, bias=head.bias is not None, device=head.weight.device)
    with torch.no_grad():
        pruned.weight.copy_(expanded.weight[:num_classes])
        if head.bias is not None:
            pruned.bias.copy_(expanded.bias[:num_classes])
    _replace(model, expanded, pruned)


@register("scrub", always_remain=True)
def scrub(model: nn.Module, task, cfg, generator: torch.Generator) -> None:
    """SCRUB (Kurmanji et al., NeurIPS 2023): the original model is a frozen teacher; the
    model (student) alternates a "max" pass over the forget set (batches of
    ``cfg.forget_batch_size``), raising KL(teacher || student), during the first
    ``cfg.max_epochs`` of ``cfg.epochs``, and a "min" pass over the remain set minimising
    ``cfg.gamma`` * CE + ``cfg.alpha`` * KL(teacher || student); KL at ``cfg.kd_temperature``,
    multiplied by its square when ``cfg.kd_t_squared`` (SCRUB's code). SGD with ``cfg``'s
    learning rate, momentum and weight decay (constant rate).
    The first max step has zero gradient (the student starts as the teacher); it is the
    min passes that move the student off it, so SCRUB needs several epochs."""
    teacher = copy.deepcopy(model).eval()
    optimizer = make_optimizer(model, cfg)
    xf, _ = task.split("forget")
    xr, yr = task.split("remain")

    device = model_device(model)

    def divergence(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = F.softmax(exact_forward(teacher, x) / cfg.kd_temperature, dim=1)
        scale = cfg.kd_temperature ** 2 if cfg.kd_t_squared else 1.0
        return scale * F.kl_div(F.log_softmax(logits / cfg.kd_temperature, dim=1), target, reduction="batchmean")

    def max_loss(idx: torch.Tensor) -> torch.Tensor:
        x = gather(xf, idx, device)
        return -divergence(x, forward(model, x))

    def min_loss(idx: torch.Tensor) -> torch.Tensor:
        x = gather(xr, idx, device)
        logits = forward(model, x)
        return cfg.gamma * F.cross_entropy(logits, gather(yr, idx, device)) + cfg.alpha * divergence(x, logits)

    def one_pass(size: int, loss_fn, batch_size: int) -> None:
        for idx in torch.randperm(size, generator=generator).split(batch_size):
            loss = loss_fn(idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    with train_mode(model):
        for epoch in range(1, cfg.epochs + 1):
            if epoch <= cfg.max_epochs:
                one_pass(len(xf), max_loss, cfg.forget_batch_size or cfg.batch_size)
            one_pass(len(xr), min_loss, cfg.batch_size)
