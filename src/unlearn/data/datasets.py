"""Load a dataset into memory as uint8 tensors.

Sources, tried in this order for a dataset name ``<name>`` under ``root``:

1. ``path`` if given: an ImageFolder directory or a ``.tar.gz`` of one;
2. torchvision's own format under ``root`` (e.g. ``cifar-10-batches-py/``),
   downloaded there by torchvision only when ``download`` is true;
3. an ImageFolder directory ``root/<name>/`` holding ``train/<class>/*`` and ``test/<class>/*``;
4. a tarball ``root/<name>*.tar.gz`` of such a folder (e.g. ``cifar10-jpg.tar.gz``).

``digits`` is scikit-learn's bundled 8x8 digits and needs no file. Decoded images
are cached in ``cache_dir`` (keyed by the source's path, size and modification
time), so JPEGs are decoded once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import numpy as np
import torch

from unlearn.errors import DataError
from unlearn.io import load_tensors, save_tensors

log = logging.getLogger(__name__)

_TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw"),
}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImageData:
    """A whole dataset in memory.

    Attributes
    ----------
    images : uint8 tensor (N, C, H, W), pixel values 0..255.
    labels : int64 tensor (N,).
    classes : class names, indexed by label.
    test_start : index of the first sample of the official test split (all samples
        from there on are test), or None if the dataset has no official split.
    names : each sample's path relative to the ImageFolder root (``train/<class>/<file>``),
        for datasets read from image files; None otherwise.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    test_start: int | None
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.labels) != len(self.images):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")


def load_dataset(
    name: str,
    *,
    root: str | Path = "data/raw",
    path: str | Path | None = None,
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> ImageData:
    """Load dataset ``name`` (see the module docstring for where it is looked for)."""
    if name == "digits":
        return _load_digits()
    if name not in _TORCHVISION:
        raise DataError(f"unknown dataset {name!r}; known: digits, {', '.join(_TORCHVISION)}")
    source = Path(path) if path is not None else _find_source(name, Path(root), download)
    cache = _cache_file(name, source, cache_dir)
    if cache is not None and cache.exists():
        return _from_tensors(load_tensors(cache))
    data = _read_source(name, source, Path(root), download)
    if cache is not None:
        save_tensors(cache, _to_tensors(data))
    return data


def dataset_source(name: str, *, root: str | Path = "data/raw", path: str | Path | None = None,
                   download: bool = False) -> str:
    """Where :func:`load_dataset` would read ``name`` from, without reading it; raises
    :class:`DataError` (with what to do) when it is not there."""
    if name == "digits":
        return "embedded (scikit-learn)"
    if path is not None:
        if not Path(path).exists():
            raise DataError(f"data.path = {path}: not found")
        return str(path)
    return str(_find_source(name, Path(root), download))


def _load_digits() -> ImageData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    images = torch.from_numpy(pixels).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return ImageData(images, labels, tuple(str(c) for c in bunch.target_names), None)


def _find_source(name: str, root: Path, download: bool) -> Path:
    _, folder = _TORCHVISION[name]
    if download or (root / folder).is_dir():
        return root / folder
    if (root / name / "train").is_dir():
        return root / name
    tarballs = sorted(root.glob(f"{name}*.tar.gz"))
    if tarballs:
        return tarballs[0]
    raise DataError(
        f"dataset {name!r} not found under {root}/: put torchvision's {folder}/, an ImageFolder "
        f"{name}/train/<class>/ + {name}/test/<class>/, or {name}.tar.gz of one there; "
        f"or set data.path to such a folder or tarball; or set data.download: true"
    )


def _read_source(name: str, source: Path, root: Path, download: bool) -> ImageData:
    if source.name.endswith(".tar.gz") or source.name.endswith(".tgz"):
        if not source.is_file():
            raise DataError(f"data.path = {source}: file not found")
        log.info("decoding %s (once; cached afterwards)", source)
        return _read_tarball(source)
    if (source / "train").is_dir():
        log.info("decoding ImageFolder %s (once; cached afterwards)", source)
        return _read_image_folder(source)
    if source.name == _TORCHVISION[name][1] or download:
        return _read_torchvision(name, root, download)
    raise DataError(f"data.path = {source}: not an ImageFolder with train/ and test/ nor a .tar.gz of one")


def _read_torchvision(name: str, root: Path, download: bool) -> ImageData:
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION[name][0])
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as exc:
        raise DataError(f"{root}/{_TORCHVISION[name][1]}: cannot read {name} ({exc})") from None
    parts = [_torchvision_tensors(ds) for ds in (train, test)]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    return ImageData(images, labels, tuple(train.classes), len(train))


def _torchvision_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.as_tensor(np.asarray(ds.data))
    images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
    return images.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


def _read_image_folder(folder: Path) -> ImageData:
    def files() -> Iterator[tuple[PurePosixPath, bytes]]:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                yield PurePosixPath(file.relative_to(folder).as_posix()), file.read_bytes()

    return _decode_members(files(), str(folder))


def _read_tarball(tarball: Path) -> ImageData:
    def files() -> Iterator[tuple[PurePosixPath, bytes]]:
        try:
            with tarfile.open(tarball, "r:gz") as archive:
                for member in archive:
                    if member.isfile():
                        yield PurePosixPath(member.name), archive.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{tarball}: unreadable archive ({exc})") from None

    return _decode_members(files(), str(tarball))


def _decode_members(members: Iterable[tuple[PurePosixPath, bytes]], where: str) -> ImageData:
    """Decode ``.../{train,test}/<class>/<file>`` images; classes sorted by name."""
    from PIL import Image, UnidentifiedImageError

    samples: dict[str, list[tuple[str, np.ndarray, str]]] = {"train": [], "test": []}
    for member, payload in members:
        parts = member.parts
        if member.suffix.lower() not in _IMAGE_SUFFIXES or len(parts) < 3 or parts[-3] not in samples:
            continue
        try:
            with Image.open(io.BytesIO(payload)) as img:
                pixels = np.asarray(img.convert("L" if img.mode in ("L", "1", "I;16") else "RGB"))
        except UnidentifiedImageError:
            raise DataError(f"{where}: unreadable image {member} (not an image format Pillow can decode)") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"{where}: unreadable image {member} ({exc})") from None
        samples[parts[-3]].append((parts[-2], pixels, "/".join(parts[-3:])))
    if not samples["train"] or not samples["test"]:
        raise DataError(f"{where}: expected images under train/<class>/ and test/<class>/, found "
                        f"{len(samples['train'])} train and {len(samples['test'])} test images")
    classes = sorted({cls for split in samples.values() for cls, _, _ in split})
    index = {cls: i for i, cls in enumerate(classes)}
    ordered = samples["train"] + samples["test"]
    shapes = {pix.shape for _, pix, _ in ordered}
    if len(shapes) != 1:
        raise DataError(f"{where}: images differ in size or channels ({sorted(shapes)[:3]}...)")
    stack = np.stack([pix for _, pix, _ in ordered])
    images = torch.from_numpy(stack[:, None] if stack.ndim == 3 else stack.transpose(0, 3, 1, 2).copy())
    labels = torch.tensor([index[cls] for cls, _, _ in ordered], dtype=torch.int64)
    return ImageData(images.contiguous(), labels, tuple(classes), len(samples["train"]),
                     tuple(name for _, _, name in ordered))


def _cache_file(name: str, source: Path, cache_dir: str | Path | None) -> Path | None:
    if cache_dir is None or not source.exists():
        return None
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|names".encode()  # |names: caches with file names
    return Path(cache_dir) / f"{name}-{hashlib.sha256(key).hexdigest()[:16]}.pt"


def _to_tensors(data: ImageData) -> dict:
    return {"images": data.images, "labels": data.labels, "classes": list(data.classes),
            "test_start": -1 if data.test_start is None else data.test_start,
            "names": None if data.names is None else list(data.names)}


def _from_tensors(blob: dict) -> ImageData:
    start = int(blob["test_start"])
    names = blob.get("names")  # absent from caches written before names were kept
    return ImageData(blob["images"], blob["labels"], tuple(blob["classes"]), None if start < 0 else start,
                     None if names is None else tuple(names))
