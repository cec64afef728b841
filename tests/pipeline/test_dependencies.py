"""Each DVC stage depends on its code through data/code/<stage>.txt (unlearn_pipeline.code_deps),
and on no code file directly; that file lists exactly the project files the stage imports, and
changes exactly when one of them does."""

from __future__ import annotations

import ast
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unlearn_pipeline.code_deps import fingerprint, stage_files, write_fingerprints
from unlearn_pipeline.stages import MODULES

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_FILES = (ROOT / "dvc.yaml", ROOT / "studies" / "dvc.yaml")


def _is_code(dep: str) -> bool:
    return dep.startswith(("pipeline", "src/"))


def dvc_stages() -> list[tuple[str, str, str, list[str]]]:
    """(pipeline file, dvc stage name, pipeline stage it runs, its deps relative to the repository
    root) of every stage of the pipeline files that runs ``python -m unlearn_pipeline <stage>``."""
    rows = []
    for file in PIPELINE_FILES:
        spec = yaml.safe_load(file.read_text())
        for name, body in spec["stages"].items():
            body = body.get("do", body)
            if "-m unlearn_pipeline " not in body["cmd"]:
                continue
            wdir = (file.parent / body.get("wdir", ".")).resolve()
            deps = [str((wdir / d).resolve().relative_to(ROOT)) for d in body.get("deps", [])
                    if not str(d).startswith("$")]
            stage = body["cmd"].split("-m unlearn_pipeline ")[1].split()[0]
            rows.append((file.name if file.parent == ROOT else f"{file.parent.name}/{file.name}", name, stage, deps))
    return rows


@pytest.mark.parametrize("row", dvc_stages(), ids=lambda row: f"{row[0]}:{row[1]}")
def test_stage_depends_on_its_code_file_and_on_no_code_file_directly(row):
    file, name, stage, deps = row
    assert f"data/code/{stage}.txt" in deps, f"{file} stage {name}: add the dep data/code/{stage}.txt"
    assert not [d for d in deps if _is_code(d)], f"{file} stage {name}: code deps go through data/code/{stage}.txt"


def test_the_code_stage_hashes_all_the_code_for_every_stage(tmp_path):
    code = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["code"]
    assert code["deps"] == ["pipeline", "src/unlearn"] and code["outs"] == ["data/code"]
    written = write_fingerprints(tmp_path / "code", ROOT)
    assert sorted(p.stem for p in written) == sorted(MODULES)
    assert {stage for _, _, stage, _ in dvc_stages()} <= set(MODULES)
    lines = (tmp_path / "code" / "evaluate.txt").read_text().splitlines()
    digest = hashlib.sha256((ROOT / "src/unlearn/evaluation/gap.py").read_bytes()).hexdigest()
    assert f"{digest}  src/unlearn/evaluation/gap.py" in lines


def test_a_stage_imports_its_own_module_only():
    files = {p.as_posix() for p in stage_files("evaluate", ROOT)}
    assert "src/unlearn/evaluation/gap.py" in files  # the Avg Gap
    assert {"pipeline/__main__.py", "pipeline/stage_server.py", "pipeline/tracking.py"} <= files  # the runner
    assert {f for f in files if f.startswith("pipeline/stages/")} == {"pipeline/stages/__init__.py",
                                                                      "pipeline/stages/evaluate.py"}


def test_a_fingerprint_changes_exactly_when_a_file_its_stage_imports_does(tmp_path):
    for folder in ("pipeline", "src/unlearn"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    before = {stage: fingerprint(stage, tmp_path) for stage in ("evaluate", "prepare", "requests")}
    with open(tmp_path / "src/unlearn/evaluation/gap.py", "a") as handle:
        handle.write("\n# edited\n")
    after = {stage: fingerprint(stage, tmp_path) for stage in before}
    assert after["evaluate"] != before["evaluate"]
    assert after["prepare"] == before["prepare"]  # it does not import the Avg Gap


def test_the_analysis_covers_what_a_stage_imports_when_it_runs():
    """Import each stage module the way the runner does; every project module then loaded must
    be in the stage's files (function-level imports are the analysis's alone to find)."""
    probe = (
        "import sys, importlib, json\n"
        "import unlearn_pipeline.__main__\n"
        "importlib.import_module('unlearn_pipeline.stages.' + sys.argv[1])\n"
        "print(json.dumps(sorted({m.__file__ for n, m in list(sys.modules.items())\n"
        "    if n.split('.')[0] in ('unlearn', 'unlearn_pipeline') and getattr(m, '__file__', None)})))\n"
    )
    for stage in ("evaluate", "unlearn_class", "sweep_cell"):
        done = subprocess.run([sys.executable, "-c", probe, MODULES[stage]], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        loaded = {Path(f).resolve().relative_to(ROOT) for f in yaml.safe_load(done.stdout)}
        assert loaded <= stage_files(stage, ROOT), sorted(map(str, loaded - stage_files(stage, ROOT)))


def test_stage_modules_import_no_other_stage_module_and_no_private_name():
    """The layering rules: a stage module imports the shared modules and the library, never
    another stage module; no module imports a name starting with ``_`` from another module."""
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
            assert not private, f"{path.relative_to(ROOT)} imports private {private} from {node.module}"
            if path.parent.name == "stages" and path.name != "__init__.py":
                assert not (node.module.startswith("unlearn_pipeline.stages.")), \
                    f"{path.relative_to(ROOT)} imports another stage module {node.module}"


@pytest.mark.parametrize("pipeline", PIPELINE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_lock_holds_no_removed_stage(pipeline):
    """DVC keeps a removed stage's dvc.lock entry; every no-op `dvc repro` then parses it
    (18 such entries were 22% of dvc.lock). Drop an entry when its stage goes."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        names = {stage.name for stage in repo.stage.collect(str(pipeline))}
    locked = set(yaml.safe_load(pipeline.with_name("dvc.lock").read_text())["stages"])
    assert not locked - names, f"{pipeline.with_name('dvc.lock')}: entries of removed stages {sorted(locked - names)}"
