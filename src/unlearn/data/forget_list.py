"""Forget lists: the samples a deletion request names, read from a text or CSV file.

One sample per line: a sample index, or an image path relative to the ImageFolder root
(``train/<class>/<file>``; only the last three parts are compared, so a leading folder
such as ``cifar10/`` may stay). Indices count over the whole dataset as prepared (for
the built-in datasets, train comes first when the dataset has an official test split,
so an index is then an index into train). In a CSV file only the first field is read,
and a first line ``index``, ``path`` (or ``idx``, ``file``, ``filename``, ``image``,
``sample``) is a header. Blank lines and lines starting with ``#`` are skipped.

Every problem is a one-line :class:`DataError` naming the file and the line: an unknown
path, an index out of range, a sample listed twice (or already forgotten by an earlier
list), a test-set sample, a list with no samples, lists that together name every
training sample.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from unlearn.errors import DataError

_HEADERS = {"index", "idx", "path", "file", "filename", "image", "sample"}
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class ForgetList:
    """A parsed list: ``lines`` maps each named sample's index to its line in ``path``."""

    path: str
    lines: dict[int, int]

    @property
    def indices(self) -> np.ndarray:
        return np.array(sorted(self.lines), dtype=np.int64)


def read_forget_list(path: str | Path, *, n_samples: int, train_size: int, test: np.ndarray,
                     names: Sequence[str] | None = None, earlier: Sequence[ForgetList] = ()) -> ForgetList:
    """Parse ``path`` against a dataset of ``n_samples`` (``names``: each sample's relative
    path, if it has them), whose ``test`` indices cannot be forgotten; ``earlier`` lists
    (earlier deletion requests) must not name the same samples."""
    text = _read_text(path)
    lookup = None if names is None else {_tail(name): i for i, name in enumerate(names)}
    test_set = set(np.asarray(test).tolist())
    seen = {index: (other.path, line) for other in earlier for index, line in other.lines.items()}
    lines: dict[int, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        field = _first_field(raw, path, number)
        if field is None or (not lines and field.lower() in _HEADERS):
            continue
        where = f"{path}:{number}"
        index = _index_of(field, where, n_samples, lookup)
        if index in lines:
            raise DataError(f"{where}: sample {field} is listed twice (first on line {lines[index]})")
        if index in seen:
            other, line = seen[index]
            raise DataError(f"{where}: sample {field} was already forgotten by an earlier list "
                            f"({other}{f':{line}' if line else ''})")
        if index in test_set:
            raise DataError(f"{where}: sample {field} is in the test split; only training samples can be forgotten")
        lines[index] = number
    if not lines:
        raise DataError(f"{path}: names no samples (one index or image path per line)")
    if len(lines) + len(seen) >= train_size:
        together = " with the earlier lists" if earlier else ""
        raise DataError(f"{path}: names{together} all {train_size} training samples; nothing would remain to "
                        f"train on")
    return ForgetList(str(path), lines)


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: forget list not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a forget list") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None


def _first_field(raw: str, path: str | Path, number: int) -> str | None:
    """The line's first CSV field, stripped; None for a blank or comment line."""
    line = raw.strip()
    if not line or line.startswith("#"):
        return None
    if "\0" in line:
        raise DataError(f"{path}:{number}: holds a NUL byte; a forget list is text")
    try:
        field = next(csv.reader([line]))[0].strip()
    except (csv.Error, StopIteration, IndexError) as exc:
        raise DataError(f"{path}:{number}: not a CSV line ({exc})") from None
    if not field:
        raise DataError(f"{path}:{number}: the first field is empty; give a sample index or image path")
    return field


def _index_of(field: str, where: str, n_samples: int, lookup: dict[str, int] | None) -> int:
    if _INTEGER.fullmatch(field):
        index = int(field)
        if not 0 <= index < n_samples:
            raise DataError(f"{where}: index {field} is out of range (the dataset has samples 0..{n_samples - 1})")
        return index
    if lookup is None:
        raise DataError(f"{where}: {field!r} is not a sample index (this dataset has no image paths; give indices "
                        f"0..{n_samples - 1})")
    index = lookup.get(_tail(field))
    if index is None:
        raise DataError(f"{where}: unknown image path {field!r} (paths are relative to the ImageFolder root, "
                        f"e.g. {next(iter(lookup))!r})")
    return index


def _tail(path: str) -> str:
    """A path's last three parts (split/class/file), in POSIX form."""
    return "/".join(PurePosixPath(path.replace("\\", "/")).parts[-3:])


def read_requests(files: Sequence[str], *, first: np.ndarray, n_samples: int, train_size: int, test: np.ndarray,
                  names: Sequence[str] | None = None) -> list[ForgetList]:
    """The deletion requests after the first (whose samples are ``first``), each checked
    against the test split and every request before it."""
    earlier = [ForgetList("data.forget", dict.fromkeys(np.asarray(first).tolist(), 0))]
    for file in files:
        earlier.append(read_forget_list(file, n_samples=n_samples, train_size=train_size, test=test, names=names,
                                        earlier=earlier))
    return earlier[1:]
