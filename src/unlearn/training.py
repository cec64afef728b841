"""The training loop: SGD with momentum and weight decay, step / cosine schedules,
optional augmentation, tensor batching, and per-step callbacks (e.g. spectral-norm
clipping, plugged in by later stages)."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from unlearn.device import forward, model_device, move, to_batch
from unlearn.optim import SGD, Constant, Cosine, Schedule, StepDecay

if TYPE_CHECKING:  # not at run time: the training loop runs without pydantic (e.g. the GPU check)
    from unlearn.checkpoint import EpochCheckpoint
    from unlearn.config import TrainConfig

log = logging.getLogger(__name__)
QUIET_LIMIT_S = 10.0  # train_ logs an epoch when this long has passed without a line


class Callback:
    """Hooks into :func:`train_`; subclass and override what you need (all default to no-ops)."""

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Before the first batch of every epoch; ``epoch`` counts from 1."""

    def before_step(self, model: nn.Module, epoch: int) -> None:
        """After the backward pass, before the optimiser step (e.g. to add a penalty's
        gradient to the parameters' ``.grad``); ``epoch`` counts from 1."""

    def on_step(self, model: nn.Module, step: int) -> None:
        """After every optimiser step; ``step`` counts from 1 over the whole run."""

    def on_train_end(self, model: nn.Module) -> None:
        """After the last epoch."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep for training to resume exactly (tensors and plain data)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    loss: float
    accuracy: float  # percent, on the (augmented) training batches
    lr: float  # the learning rate used during this epoch
    seconds: float
    images: int  # samples seen this epoch
    resumed: bool = False  # restored from a checkpoint, not trained by this call

    @property
    def images_per_s(self) -> float:
        return math.nan if self.seconds == 0 else self.images / self.seconds


def resumed_seconds(history: Sequence[EpochStats]) -> float:
    """The seconds the epochs restored from a checkpoint took when they were trained: a
    resumed training adds them to its wall time, so runtime comparisons stay fair."""
    return sum(stats.seconds for stats in history if stats.resumed)


_EXTRA_CALLBACKS: contextvars.ContextVar[Callable[[nn.Module], list[Callback]] | None] = contextvars.ContextVar(
    "extra_callbacks", default=None)


@contextlib.contextmanager
def extra_callbacks(factory: Callable[[nn.Module], list[Callback]]) -> Iterator[None]:
    """Within the block, every :func:`train_` call adds ``factory(model)``'s callbacks to its
    own: e.g. FastClip kept on while an unlearning method, whatever its recipe, fine-tunes a
    smooth model (the methods call ``train_`` themselves, so they need not know about it)."""
    token = _EXTRA_CALLBACKS.set(factory)
    try:
        yield
    finally:
        _EXTRA_CALLBACKS.reset(token)


@contextlib.contextmanager
def train_mode(model: nn.Module, training: bool = True) -> Iterator[nn.Module]:
    """Set ``model.train(training)`` and restore each module's previous mode afterwards."""
    previous = {module: module.training for module in model.modules()}
    model.train(training)
    try:
        yield model
    finally:
        for module, mode in previous.items():
            module.training = mode


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (0..255) -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def augment_batch(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding of ``padding`` pixels) and horizontal flip, per sample.

    Vectorised over the batch, on ``x``'s device: x (N, C, H, W) float -> same shape. The
    random offsets and flips are drawn from ``generator`` (a CPU generator) in the same
    order on every device, so a CPU run is the same whatever device others use.
    """
    return apply_augmentation(x, padding, *move_draws(draw_augmentation(len(x), padding, generator), x.device))


def draw_augmentation(n: int, padding: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The random draws of :func:`augment_batch` for ``n`` samples, on the CPU: row and
    column offsets (when ``padding`` > 0; int64 (n,)) and flips (bool (n,)), in that order."""
    offsets = ()
    if padding > 0:
        offsets = tuple(torch.randint(0, 2 * padding + 1, (n,), generator=generator) for _ in range(2))
    return (*offsets, torch.rand(n, generator=generator) < 0.5)


def move_draws(draws: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(move(draw, device) for draw in draws)


def apply_augmentation(x: torch.Tensor, padding: int, *draws: torch.Tensor) -> torch.Tensor:
    """Crop and flip ``x`` by the :func:`draw_augmentation` draws (on ``x``'s device)."""
    n, _, h, w = x.shape
    device = x.device
    flip = draws[-1]
    if padding > 0:
        dy, dx = (draw.view(n, 1, 1, 1) for draw in draws[:2])
        padded = F.pad(x, (padding, padding, padding, padding))
        rows = (torch.arange(h, device=device).view(1, 1, h, 1) + dy).expand(n, x.shape[1], h, w)
        cols = (torch.arange(w, device=device).view(1, 1, 1, w) + dx).expand(n, x.shape[1], h, w)
        x = _crop(padded, rows, cols)
    return torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)


def _epoch_plan(n: int, cfg: TrainConfig, generator: torch.Generator, homes: set[torch.device]):
    """One epoch's batches and augmentation, drawn on the CPU in the order the per-batch
    loop always drew them (the permutation, then each batch's offsets and flips), and
    moved once to every device in ``homes``: no host-to-device copy per step, and CPU
    results bit-identical to drawing them batch by batch."""
    order = torch.randperm(n, generator=generator)
    sizes = [len(idx) for idx in order.split(cfg.batch_size)]
    draws = None
    if cfg.augment:
        per_batch = [draw_augmentation(size, cfg.crop_padding, generator) for size in sizes]
        draws = tuple(torch.cat(column) for column in zip(*per_batch))
    return {home: ([*move(order, home).split(sizes)],
                   None if draws is None else [list(draw.split(sizes)) for draw in move_draws(draws, home)])
            for home in homes}


def _crop(padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    n, c, h, w = rows.shape
    batch = torch.arange(n, device=rows.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=rows.device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> SGD:
    return SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: SGD, cfg: TrainConfig) -> Schedule:
    """Per-epoch learning-rate schedule named by ``cfg.schedule``."""
    if cfg.schedule == "step":
        return StepDecay(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "cosine":
        return Cosine(optimizer, t_max=cfg.epochs)
    return Constant(optimizer)


def train_(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: TrainConfig,
    *,
    generator: torch.Generator,
    callbacks: Sequence[Callback] = (),
    on_epoch: Callable[[EpochStats], None] | None = None,
    progress: bool = False,
    sample_weights: torch.Tensor | None = None,
    soft_labels: torch.Tensor | None = None,
    penalty: Callable[[nn.Module, int], torch.Tensor] | None = None,
    no_augment: torch.Tensor | None = None,
    checkpoint: EpochCheckpoint | None = None,
) -> list[EpochStats]:
    """Train ``model`` in place on ``images`` ((N, C, H, W), uint8 pixels or float in [0, 1])
    and ``labels`` (int64, (N,)).

    The loss of a batch is the mean over its samples of ``sample_weights[i] * CE_i``
    (weights default to 1; -1 ascends a sample's loss); with ``soft_labels`` (N, C), CE_i
    is the cross-entropy to that distribution (``labels`` then only count accuracy) plus ``penalty(model, epoch)``
    when given (``epoch`` counts from 1). Mini-batches are drawn by a seeded
    permutation of ``generator`` each epoch (the last, smaller batch included), so
    training is deterministic on CPU for a given generator state. Returns the
    per-epoch statistics (the loss without the penalty), also passed to ``on_epoch``.
    With ``cfg.augment``, samples flagged in the boolean ``no_augment`` (N,) are used as they are.

    Batches are gathered from wherever ``images`` lie (e.g. uint8 images moved to the GPU
    once) and run on the model's device, where the labels are moved once per epoch (after
    ``on_epoch_start``, which may change them in place) and the other per-sample tensors once;
    the forward pass runs in the current :func:`unlearn.device.precision`. The
    batch order and augmentation are drawn from ``generator`` (CPU) alike on every device,
    once per epoch, and moved to the device once per epoch.

    With ``checkpoint``, the state after every ``checkpoint.every`` epochs (and the last) is saved there, and a matching saved
    state is resumed from: the result is bit-identical to an uninterrupted run (CPU), the
    returned history includes the restored epochs (flagged ``resumed``, with the seconds
    they took then), but ``on_epoch`` is called for the new epochs only. The caller
    removes the file once the result is safely stored.

    Without ``on_epoch``, an epoch ending ``QUIET_LIMIT_S`` or more after the last line logs
    one (so unlearning on CIFAR-10 is never silent for minutes; digits' short runs stay quiet).
    """
    from tqdm.auto import tqdm

    device = model_device(model)
    factory = _EXTRA_CALLBACKS.get()
    callbacks = [*callbacks, *(factory(model) if factory is not None else ())]
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    history: list[EpochStats] = []
    step = 0
    n = len(images)
    sample_weights, soft_labels, no_augment = (
        None if tensor is None else move(tensor, device) for tensor in (sample_weights, soft_labels, no_augment))
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        step, history = _restore(saved, model, optimizer, scheduler, generator, callbacks)
    last_line = time.perf_counter()
    with train_mode(model):
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            start = time.perf_counter()
            for callback in callbacks:
                callback.on_epoch_start(model, epoch)
            lr = optimizer.lr
            # after on_epoch_start: a callback may relabel in place (RL redraws wrong labels every
            # epoch); a copy made once on another device would keep the first epoch's labels
            epoch_labels = move(labels, device)
            total_loss = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            plan = _epoch_plan(n, cfg, generator, {images.device, device})
            batches, draws = plan[images.device][0], plan[device][1]
            on_device = plan[device][0]
            for b in tqdm(range(len(batches)), desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not progress):
                idx = on_device[b]
                x = move(images[batches[b]], device)
                x = to_float(x) if x.dtype == torch.uint8 else x
                if cfg.augment:
                    augmented = apply_augmentation(x, cfg.crop_padding, *(column[b] for column in draws))
                    x = augmented if no_augment is None else torch.where(no_augment[idx].view(-1, 1, 1, 1),
                                                                         x, augmented)
                x = to_batch(x, device)  # channels_last on CUDA, after the augmentation's gathers
                y = epoch_labels[idx]
                logits = forward(model, x)
                target = y if soft_labels is None else soft_labels[idx]
                if sample_weights is None:
                    loss = F.cross_entropy(logits, target)
                else:
                    loss = (F.cross_entropy(logits, target, reduction="none") * sample_weights[idx]).mean()
                objective = loss if penalty is None else loss + penalty(model, epoch)
                optimizer.zero_grad()
                objective.backward()
                for callback in callbacks:
                    callback.before_step(model, epoch)
                optimizer.step()
                step += 1
                for callback in callbacks:
                    callback.on_step(model, step)
                with torch.no_grad():
                    total_loss += loss.detach() * len(idx)
                    correct += (logits.argmax(1) == y).sum()
            scheduler.step()
            stats = EpochStats(epoch, total_loss.item() / n, 100.0 * correct.item() / n, lr,
                               time.perf_counter() - start, n)
            history.append(stats)
            if checkpoint is not None and (epoch % checkpoint.every == 0 or epoch == cfg.epochs):
                checkpoint.save(_snapshot(step, history, model, optimizer, scheduler, generator, callbacks))
            if on_epoch is not None:
                on_epoch(stats)
            elif time.perf_counter() - last_line >= QUIET_LIMIT_S:
                log.info("epoch %d/%d: loss %.4f, acc %.2f%%, %.1f s", epoch, cfg.epochs, stats.loss,
                         stats.accuracy, stats.seconds)
                last_line = time.perf_counter()
        for callback in callbacks:
            callback.on_train_end(model)
    return history


def _snapshot(step: int, history: list[EpochStats], model: nn.Module, optimizer: SGD,
              scheduler: Schedule, generator: torch.Generator,
              callbacks: Sequence[Callback]) -> dict[str, Any]:
    return {"step": step, "history": [dataclasses.asdict(stats) for stats in history],
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(), "callbacks": [callback.state_dict() for callback in callbacks]}


def _restore(saved: dict[str, Any], model: nn.Module, optimizer: SGD,
             scheduler: Schedule, generator: torch.Generator,
             callbacks: Sequence[Callback]) -> tuple[int, list[EpochStats]]:
    """Load a :func:`_snapshot` into the training objects; returns the step count and history."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    generator.set_state(saved["generator"])
    for callback, state in zip(callbacks, saved["callbacks"], strict=True):
        callback.load_state_dict(state)
    return saved["step"], [EpochStats(**{**stats, "resumed": True}) for stats in saved["history"]]
