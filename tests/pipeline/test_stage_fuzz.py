"""Fuzz of every stage's command line: wrong items, broken params files, wrong values and
missing inputs each end with exit status 2, one `error:` line, no traceback and no output."""

import shutil

import pytest

from unlearn_pipeline.__main__ import main
from unlearn_pipeline.stages import MODULES
from tests.conftest import write_params

ITEMS = {"unlearn": ["amun"], "unlearn_class": ["trw"], "sweep_cell": ["0", "0"],
         "sweep_method": ["amun"], "smoothness": ["0"], "transfer": ["0"], "class_cell": ["0", "1"],
         "class_method": ["trw"], "memorized_level": ["high"]}
WRONG_ITEMS = [["nope"], ["1", "2", "3"], ["../../etc/passwd"], [""], ["0", "x"]]
BROKEN_PARAMS = {
    "missing.yaml": None,
    "syntax.yaml": "train: {epochs: 2\n",
    "list.yaml": "- 1\n- 2\n",
    "empty.yaml": "",
    "unknown.yaml": "trian:\n  epochs: 2\n",
    "binary.yaml": b"\xff\xfe\x00garbage",
}


def _files(root):
    return {p for p in root.rglob("*") if ".git" not in p.parts and p.is_file()}


def _refused(capsys, argv, root) -> str:
    before = _files(root)
    code = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, (argv, code, err)
    assert _files(root) == before, argv
    return errors[0]


# the first stage, and import_model without original.checkpoint: nothing upstream to miss
NEEDS_NO_INPUT = ("prepare", "import_model")


@pytest.mark.parametrize("stage", sorted(MODULES))
def test_every_stage_refuses_bad_input_with_one_line(stage, project, capsys):
    cases = 0
    items = ITEMS.get(stage, [])
    for wrong in WRONG_ITEMS:  # wrong item names or counts
        if wrong != items:
            _refused(capsys, [stage, *wrong], project)
            cases += 1
    for name, content in BROKEN_PARAMS.items():
        path = project / name
        if content is not None:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert name in _refused(capsys, [stage, *items, "--params", name], project)
        cases += 1
    write_params(project, {"seed": "zero"})
    assert "seed" in _refused(capsys, [stage, *items], project)
    cases += 1
    if stage not in NEEDS_NO_INPUT:  # valid params, nothing prepared yet: the missing input is named
        write_params(project, {"seed": 0})
        shutil.rmtree(project / "data" / "sweep", ignore_errors=True)  # the study's committed results
        line = _refused(capsys, [stage, *items], project)
        assert "not found" in line, line
        cases += 1
    assert cases >= 11


def test_corrupt_inputs_are_detected_and_named(project, capsys):
    import numpy as np

    from tests.unlearn.data.test_datasets import _make_folder

    write_params(project, {"data": {"dataset": "cifar10"}})
    _make_folder(project / "data" / "raw", corrupt=True)
    assert _refused(capsys, ["prepare"], project) == (
        "error: data/raw/cifar10: unreadable image train/dog/bad.png (not an image format Pillow can decode)")

    write_params(project, {"data": {"dataset": "digits"}})
    assert main(["prepare"]) == 0 and main(["import_model"]) == 0 and main(["train"]) == 0
    prepared, model = project / "data" / "prepared", project / "data" / "models" / "original.pt"
    forget, weights = (prepared / "forget.npy").read_bytes(), model.read_bytes()

    np.save(prepared / "forget.npy", np.arange(5000, 5000 + len(np.load(prepared / "forget.npy"))))
    assert _refused(capsys, ["unlearn", "ft"], project).startswith(
        "error: data/prepared/forget.npy: does not match data/prepared/images.pt")
    (prepared / "forget.npy").write_bytes(forget[: len(forget) // 2])  # truncated
    assert _refused(capsys, ["unlearn", "ft"], project).startswith(
        "error: data/prepared/forget.npy: not a valid index file")
    (prepared / "forget.npy").write_bytes(forget)

    model.write_bytes(weights[: len(weights) // 2])  # a damaged checkpoint
    assert _refused(capsys, ["unlearn", "ft"], project).startswith(
        "error: data/models/original.pt: not a valid tensor file")
    shutil.copy(project / "data" / "prepared" / "images.pt", model)  # a valid file of the wrong kind
    assert _refused(capsys, ["unlearn", "ft"], project).startswith(
        "error: data/models/original.pt: does not fit model 'small_cnn'")
