import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unlearn.data import load_dataset
from unlearn.errors import DataError

SHARED_CIFAR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def _png(value: int, size=(6, 5)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _make_folder(root: Path, corrupt: bool = False) -> Path:
    for split, count in (("train", 3), ("test", 2)):
        for label, name in enumerate(["cat", "dog"]):
            folder = root / "cifar10" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (folder / f"{i}.png").write_bytes(_png(10 * label + i))
    if corrupt:
        (root / "cifar10" / "train" / "dog" / "bad.png").write_bytes(b"not an image")
    return root / "cifar10"


def test_digits_is_uint8_without_official_split():
    data = load_dataset("digits")
    assert data.images.dtype == torch.uint8 and data.images.shape == (1797, 1, 8, 8)
    assert data.images.max() == 255 and data.test_start is None
    assert data.classes == tuple(str(i) for i in range(10))


def test_image_folder(tmp_path):
    folder = _make_folder(tmp_path)
    data = load_dataset("cifar10", root=tmp_path)
    assert data.images.shape == (10, 3, 5, 6)
    assert data.classes == ("cat", "dog") and data.test_start == 6
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1]
    assert data.images[4, 0, 0, 0].item() == 11  # dog, train, image 1
    explicit = load_dataset("cifar10", path=folder)
    assert torch.equal(explicit.images, data.images)


def test_tarball_matches_folder_and_is_cached(tmp_path):
    folder = _make_folder(tmp_path / "src")
    tarball = tmp_path / "raw" / "cifar10-jpg.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname="cifar10")
    cache = tmp_path / "cache"
    data = load_dataset("cifar10", root=tmp_path / "raw", cache_dir=cache)
    assert torch.equal(data.images, load_dataset("cifar10", path=folder).images)
    assert len(list(cache.glob("cifar10-*.pt"))) == 1
    again = load_dataset("cifar10", root=tmp_path / "raw", cache_dir=cache)
    assert torch.equal(again.images, data.images) and again.classes == data.classes


def test_missing_dataset_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match=r"dataset 'cifar10' not found under .*data.download: true"):
        load_dataset("cifar10", root=tmp_path)


def test_unreadable_image_is_named(tmp_path):
    _make_folder(tmp_path, corrupt=True)
    with pytest.raises(DataError, match=r"unreadable image train/dog/bad.png"):
        load_dataset("cifar10", root=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="../shared/data/cifar10-jpg.tar.gz not present")
def test_shared_cifar10_tarball(tmp_path):
    data = load_dataset("cifar10", path=SHARED_CIFAR, cache_dir=tmp_path)
    assert data.images.shape == (60000, 3, 32, 32) and data.test_start == 50000
    assert torch.bincount(data.labels[:50000]).tolist() == [5000] * 10
    assert data.classes[1] == "automobile"
