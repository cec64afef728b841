"""Where tensors live and at what precision.

Every library function runs on the device of the model it is given: batches are moved
there (index gathers from wherever the data lie, e.g. a uint8 image tensor moved to the
GPU once), and nothing is moved back to the CPU inside a loop. Mixed precision is chosen
once, around a whole computation, with :func:`precision`; every forward pass of the
library goes through :func:`forward`, which runs it under ``torch.autocast`` in that
dtype and returns float32 logits (the weights stay float32). fp32, the default, adds
nothing, which keeps CPU runs bit-identical to runs made before devices existed.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from typing import Iterator

import torch
from torch import nn

from unlearn.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
_precision: contextvars.ContextVar[str] = contextvars.ContextVar("unlearn_precision", default="fp32")


def resolve_device(spec: str) -> torch.device:
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", spec):
        raise ConfigError(f"device {spec!r}: must be auto, cpu, cuda or cuda:N")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r}: CUDA is not available here; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def device_name(device: torch.device) -> str:
    """A human name of ``device`` (the GPU's model, or ``cpu``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` moved to ``device``, in channels_last memory layout on CUDA (faster convolutions)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def move(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; no call at all when it is there already."""
    return x if x.device == device else x.to(device, non_blocking=True)


def to_batch(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; 4-D batches in channels_last on CUDA."""
    x = move(x, device)
    if device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def gather(data: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``data[idx]`` gathered where ``data`` lies, then moved to ``device``."""
    return to_batch(data[move(idx, data.device)], device)


@contextlib.contextmanager
def precision(name: str) -> Iterator[None]:
    """Run the library's forward passes in precision ``name`` (``fp32`` or ``bf16``) inside the block."""
    if name not in PRECISIONS:
        raise ConfigError(f"precision {name!r}: must be one of {', '.join(PRECISIONS)}")
    token = _precision.set(name)
    try:
        yield
    finally:
        _precision.reset(token)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of the current :func:`precision` on ``device`` (none for fp32)."""
    dtype = PRECISIONS[_precision.get()]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` as float32, its forward pass in the current precision on ``x``'s device."""
    with autocast(x.device):
        return model(x).float()
