"""Where tensors live and at what precision.

Every library function runs on the device of the model it is given: batches are moved
there (index gathers from wherever the data lie, e.g. a uint8 image tensor moved to the
GPU once), and nothing is moved back to the CPU inside a loop. Mixed precision is chosen
once, around a whole computation, with :func:`precision`; every forward pass of the
library goes through :func:`forward`, which runs it under ``torch.autocast`` in that
dtype and returns float32 logits (the weights stay float32). fp32, the default, adds
nothing, which keeps CPU runs bit-identical to runs made before devices existed.

What a number is *read* from runs exactly, whatever the precision: :func:`exact` turns
autocast off and, on CUDA, TF32 off (convolutions and matmuls in full float32). The
attacks' logits, a method's targets (TRW's, SCRUB's teacher, SalUn's saliency, boundary
shrink's labels) and FastClip's spectral norms are computed inside it; training steps and
PGD keep the chosen precision (D_A's labels too: they are PGD's own stopping decisions,
see :func:`unlearn.attacks.adversarial_set`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
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


@contextlib.contextmanager
def exact() -> Iterator[None]:
    """Forward passes in full float32 inside the block: no autocast (whatever
    :func:`precision` says) and no TF32 in cuDNN convolutions or CUDA matmuls; the
    previous settings are restored afterwards (also usable as a decorator)."""
    token = _precision.set("fp32")
    try:
        with tf32(False):
            yield
    finally:
        _precision.reset(token)


def _per_backend_flags() -> bool:
    """torch >= 2.9 has per-backend ``fp32_precision`` flags and refuses to mix them with the
    legacy ``allow_tf32`` ones, so the new flags are used where they exist."""
    return hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision")


@contextlib.contextmanager
def tf32(allowed: bool) -> Iterator[None]:
    """TF32 ``allowed`` (or not) for cuDNN convolutions and CUDA matmuls inside the block,
    the previous flags restored afterwards."""
    backends = torch.backends
    if _per_backend_flags():
        flags = [backends.cudnn.conv, backends.cuda.matmul]
        saved = [flag.fp32_precision for flag in flags]
        for flag in flags:
            flag.fp32_precision = "tf32" if allowed else "ieee"
        try:
            yield
        finally:
            for flag, value in zip(flags, saved):
                flag.fp32_precision = value
        return
    saved_legacy = backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32
    backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = saved_legacy


def tf32_flags() -> dict[str, str]:
    """The TF32 settings now in force (for logs and the device check)."""
    backends = torch.backends
    if _per_backend_flags():
        return {"cudnn.conv": backends.cudnn.conv.fp32_precision, "cuda.matmul": backends.cuda.matmul.fp32_precision,
                "global": backends.fp32_precision}
    return {"cudnn.allow_tf32": str(backends.cudnn.allow_tf32),
            "cuda.matmul.allow_tf32": str(backends.cuda.matmul.allow_tf32)}


def set_determinism(device: torch.device, deterministic: bool) -> None:
    """On CUDA, ``deterministic`` makes cuDNN pick deterministic kernels (no autotuning) and
    torch use deterministic ones where they exist, warning where they do not (cuBLAS gets
    the fixed workspace it needs):
    two runs on the same GPU and software give identical bits, at some speed. False lets
    cuDNN autotune (faster, results vary in the last bits). CPU kernels are deterministic
    for a fixed thread count already, so nothing changes there."""
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    # warn_only: an op without a deterministic CUDA kernel warns instead of failing a long GPU run
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


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


def exact_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in full float32 (see :func:`exact`): what attacks and targets read."""
    with exact():
        return forward(model, x)
