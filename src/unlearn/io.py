"""Atomic writes, hashing and safe loading of artifacts.

Every artifact is written to a temporary file in the target directory and renamed
into place, so an interrupted stage leaves the old file or none, never half of one.
Tensors and checkpoints are loaded with ``weights_only=True``: nothing unpickles
arbitrary objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from unlearn.errors import DataError


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success, with the
    mode a plain ``open`` would give it (0644 under the usual umask; ``mkstemp``'s own
    0600 would hide reports from other users of a shared workspace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def save_tensors(path: str | os.PathLike, tensors: dict[str, Any]) -> None:
    """Save a dict of tensors / plain values (a state_dict, a dataset) atomically.

    Written through a file handle: given a path, torch.save names the archive's root
    folder after the (random) temporary file name, so equal tensors would give
    different bytes and DVC would see a changed output on every run.
    """
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(tensors, fh)


def load_tensors(path: str | os.PathLike) -> dict[str, Any]:
    """Load a file written by :func:`save_tensors`, refusing anything but tensors and plain data."""
    import torch

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a valid tensor file ({first_line})") from None


def save_indices(path: str | os.PathLike, indices: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(indices, dtype=np.int64), allow_pickle=False)


def load_indices(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except ValueError as exc:
        raise DataError(f"{path}: not a valid index file ({exc})") from None


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
