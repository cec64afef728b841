"""An existing model's weights as the original model: a state_dict saved with ``torch.save``
(``.pt`` / ``.pth``, loaded weights-only) or a ``.safetensors`` file.

The weights may be those of the network alone (the usual case: a model trained by the
user's own script, which normalises its inputs itself) or of this project's whole model
(``Normalize`` as ``0.*``, the network as ``1.*``, as the pipeline saves them). A network
alone gets this pipeline's normalisation: the training split's per-channel mean and std.
A ``module.`` prefix (DataParallel) and a ``{"state_dict": ...}`` wrapper are accepted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from unlearn.errors import DataError

_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` by name; a :class:`DataError` naming the file when it holds anything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        state = _read_safetensors(path)
    elif path.suffix in (".pt", ".pth"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for corrupt or unsafe files
            if "Unsupported global" in str(exc):  # a pickled module (or other class), not only tensors
                raise DataError(f"{path}: holds a pickled object, not only weights; save the weights with "
                                f"torch.save(model.state_dict(), {path.name!r}) (a pickle can run code, so it "
                                f"is not loaded)") from None
            raise DataError(f"{path}: not a weights-only state_dict ({_reason(exc)})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    else:
        raise DataError(f"{path}: unknown checkpoint format {path.suffix!r}; use .pt, .pth or .safetensors")
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DataError(f"{path}: not a state_dict (a mapping of parameter names to tensors)")
    return {key.removeprefix("module."): value for key, value in state.items()}


def _reason(exc: Exception) -> str:
    """One plain line from torch's error: the unpickler's own reason when it gives one (the
    message starts with the same advice for every file), without terminal escape codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    return found.group(1).strip() if found else (text.splitlines()[0] if text else type(exc).__name__)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The safetensors format: an 8-byte little-endian header length, a JSON header
    (name -> dtype, shape, data_offsets), then the raw little-endian tensor bytes."""
    blob = path.read_bytes()
    try:
        size = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + size])
        data = memoryview(blob)[8 + size:]
        state = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            start, end = entry["data_offsets"]
            raw = bytes(data[start:end])
            state[name] = (torch.frombuffer(bytearray(raw), dtype=_SAFETENSORS_DTYPES[entry["dtype"]])
                           .reshape(entry["shape"]).clone() if raw else
                           torch.empty(entry["shape"], dtype=_SAFETENSORS_DTYPES[entry["dtype"]]))
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise DataError(f"{path}: not a valid safetensors file ({type(exc).__name__}: {exc})") from None
    return state


def load_checkpoint(model: nn.Sequential, path: str | Path, name: str) -> None:
    """Load ``path`` into ``model`` (``Normalize`` then the network ``name``), checked key by key and
    shape by shape; a one-line :class:`DataError` on the first mismatch."""
    state = read_state_dict(path)
    whole = "0.mean" in state and "0.std" in state
    target = model if whole else model[1]
    expected = target.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    for keys, what in ((missing, "lacks"), (unexpected, "has")):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise DataError(f"{path}: does not fit model.name = {name}: it {what} {keys[0]!r}{more}; "
                            f"check model.name, model.cifar_stem and the data's classes and channels")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise DataError(f"{path}: does not fit model.name = {name}: {key} has shape {tuple(state[key].shape)}, "
                            f"the model's is {tuple(tensor.shape)}")
    target.load_state_dict({key: value.to(expected[key].dtype) for key, value in state.items()})
