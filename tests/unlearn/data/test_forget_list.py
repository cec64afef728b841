"""Forget lists: what they accept, a one-line error naming the file and line for everything
else, and fuzzed files that only ever give that error."""

import random

import numpy as np
import pytest

from unlearn.data import ForgetList, read_forget_list, read_requests
from unlearn.errors import DataError

N, TEST = 12, np.array([10, 11])
NAMES = [f"train/c{i % 2}/{i:03d}.png" for i in range(10)] + ["test/c0/010.png", "test/c1/011.png"]


def _read(tmp_path, text, names=None, earlier=(), name="list.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return read_forget_list(path, n_samples=N, train_size=10, test=TEST, names=names, earlier=earlier)


def test_indices_paths_csv_header_and_comments(tmp_path):
    found = _read(tmp_path, "index,reason\n# a comment\n3,asked by email\n\n 1 \n", names=NAMES)
    assert found.indices.tolist() == [1, 3] and found.lines == {3: 3, 1: 5}
    by_path = _read(tmp_path, "path\ntrain/c0/004.png\n./data/cifar/train/c1/007.png\n\"train/c1/005.png\"\n",
                    names=NAMES)
    assert by_path.indices.tolist() == [4, 5, 7]
    assert _read(tmp_path, "\ufeff2\r\n8\r\n").indices.tolist() == [2, 8]  # BOM and CRLF


@pytest.mark.parametrize("text, message", [
    ("1\n12\n", "list.txt:2: index 12 is out of range (the dataset has samples 0..11)"),
    ("-1\n", "list.txt:1: index -1 is out of range"),
    ("1\n4\n1\n", "list.txt:3: sample 1 is listed twice (first on line 1)"),
    ("10\n", "list.txt:1: sample 10 is in the test split; only training samples can be forgotten"),
    ("# nothing\n\n", "list.txt: names no samples"),
    ("index\n", "list.txt: names no samples"),
    ("\n".join(map(str, range(10))), "list.txt: names all 10 training samples; nothing would remain"),
    ("train/c0/000.png\n", "list.txt:1: 'train/c0/000.png' is not a sample index (this dataset has no image paths"),
    ("1.5\n", "list.txt:1: '1.5' is not a sample index"),
    (b"\xff\xfe1\n", "list.txt: not UTF-8 text (byte 0)"),
    ("1\n\"unterminated\n", "list.txt:2: "),
    ("1\n,5\n", "list.txt:2: the first field is empty"),
])
def test_each_problem_is_one_line_naming_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError) as error:
        _read(tmp_path, text)
    assert str(error.value).startswith(str(tmp_path / message.split(":")[0]) + message[len(message.split(":")[0]):])
    assert "\n" not in str(error.value)


def test_unknown_path_names_an_example_of_the_form(tmp_path):
    with pytest.raises(DataError, match=r"list.txt:1: unknown image path 'train/c0/999.png' .*'train/c0/000.png'"):
        _read(tmp_path, "train/c0/999.png\n", names=NAMES)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="absent.txt: forget list not found"):
        read_forget_list(tmp_path / "absent.txt", n_samples=N, train_size=10, test=TEST)
    with pytest.raises(DataError, match="is a folder"):
        read_forget_list(tmp_path, n_samples=N, train_size=10, test=TEST)


def test_requests_may_not_repeat_earlier_samples_or_take_all_of_train(tmp_path):
    (tmp_path / "second.txt").write_text("2\n3\n")
    (tmp_path / "third.txt").write_text("4\n2\n")
    with pytest.raises(DataError, match=r"third.txt:2: sample 2 was already forgotten by an earlier list "
                                        r"\(.*second.txt:1\)"):
        read_requests([tmp_path / "second.txt", tmp_path / "third.txt"], first=np.array([0, 1]), n_samples=N,
                      train_size=10, test=TEST)
    (tmp_path / "again.txt").write_text("1\n")
    with pytest.raises(DataError, match=r"again.txt:1: sample 1 was already forgotten by an earlier list "
                                        r"\(data.forget\)"):
        read_requests([tmp_path / "again.txt"], first=np.array([0, 1]), n_samples=N, train_size=10, test=TEST)
    (tmp_path / "rest.txt").write_text("\n".join(map(str, range(2, 10))))
    with pytest.raises(DataError, match="names with the earlier lists all 10 training samples"):
        read_requests([tmp_path / "rest.txt"], first=np.array([0, 1]), n_samples=N, train_size=10, test=TEST)
    found = read_requests([tmp_path / "second.txt"], first=np.array([0, 1]), n_samples=N, train_size=10, test=TEST)
    assert [r.indices.tolist() for r in found] == [[2, 3]]


VALID = "index\n# kept\n1\n3\ntrain/c1/005.png\n7,\"x, y\"\n"


def _mutations(seed: int):
    rng = random.Random(seed)
    text = VALID
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        at = rng.randrange(len(text) + 1)
        if kind == 0:
            text = text[:at] + rng.choice(["\n", ",", "\"", "#", "-", "9" * rng.randint(1, 30), "\0", " ", "/", "..",
                                           "train/c0/", "\\", "\ud7ff", "1e3", "\t"]) + text[at:]
        elif kind == 1:
            text = text[:at] + text[at + rng.randint(1, 5):]
        elif kind == 2:
            text = text + "\n".join(str(rng.randint(-3, 14)) for _ in range(rng.randint(1, 12)))
        elif kind == 3:
            text = text.replace("\n", rng.choice(["\r\n", "\r", "\n\n", ","]))
        else:
            text = "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 40)))
    return text


@pytest.mark.parametrize("seed", range(300))
def test_fuzzed_lists_parse_or_give_one_line_error(tmp_path, seed):
    text = _mutations(seed)
    try:
        found = _read(tmp_path, text, names=NAMES)
    except DataError as error:
        message = str(error)
        assert message.startswith(str(tmp_path / "list.txt")) and "\n" not in message.strip()
        return
    assert isinstance(found, ForgetList) and 0 < len(found.lines) < 10
    assert set(found.lines).isdisjoint(TEST.tolist()) and all(0 <= i < N for i in found.lines)


@pytest.mark.parametrize("seed", range(50))
def test_fuzzed_bytes_never_escape_as_another_error(tmp_path, seed):
    rng = random.Random(seed)
    payload = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    try:
        _read(tmp_path, payload, names=NAMES if seed % 2 else None)
    except DataError as error:
        assert "\n" not in str(error).strip()
