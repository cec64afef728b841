import os
import pickle

import numpy as np
import pytest
import torch

from unlearn.errors import DataError
from unlearn.io import atomic_path, load_indices, load_tensors, save_indices, save_tensors


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_round_trip(tmp_path):
    save_tensors(tmp_path / "a.pt", {"w": torch.arange(3)})
    assert torch.equal(load_tensors(tmp_path / "a.pt")["w"], torch.arange(3))
    save_indices(tmp_path / "i.npy", np.array([3, 1]))
    assert load_indices(tmp_path / "i.npy").tolist() == [3, 1]


def test_equal_tensors_give_equal_bytes(tmp_path):
    save_tensors(tmp_path / "a.pt", {"w": torch.arange(5.0)})
    save_tensors(tmp_path / "b.pt", {"w": torch.arange(5.0)})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"w": _Exploit()}))
    with pytest.raises(DataError, match="model.pt: not a valid tensor file"):
        load_tensors(evil)
    assert not (tmp_path / "pwned").exists()


def test_truncated_files_are_named(tmp_path):
    save_tensors(tmp_path / "m.pt", {"w": torch.zeros(1000)})
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="m.pt: not a valid tensor file"):
        load_tensors(tmp_path / "m.pt")
    (tmp_path / "i.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="i.npy: not a valid index file"):
        load_indices(tmp_path / "i.npy")


def test_written_files_get_the_mode_a_plain_open_gives(tmp_path):
    import os

    from unlearn.io import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "report.html", "<p>hi</p>")
    finally:
        os.umask(old)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
