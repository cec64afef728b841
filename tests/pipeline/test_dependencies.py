"""Each DVC stage depends on exactly the project files its code imports.

The files a stage imports are derived by static analysis: from the stage runner
(``pipeline/__main__.py``) and the stage's module (``unlearn_pipeline.stages.MODULES``),
every ``import`` reached, transitively, inside ``pipeline/`` and ``src/unlearn/``
(function-level imports included, ``if TYPE_CHECKING:`` blocks excluded; a package's
``__init__`` counts when anything in it is imported; a lazy package ``__getattr__`` is
followed through its ``_SOURCES`` map). A dvc.yaml stage must list a dep covering each
such file (the file, or its folder when every file of the folder is imported), and no
code dep that covers none. ``python tests/pipeline/test_dependencies.py`` prints each
stage's expected code deps.
"""

from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"unlearn_pipeline": ROOT / "pipeline", "unlearn": ROOT / "src" / "unlearn"}
RUNNER = ROOT / "pipeline" / "__main__.py"
PIPELINE_FILES = (ROOT / "dvc.yaml", ROOT / "studies" / "dvc.yaml")


def module_file(name: str) -> Path | None:
    """The project file of module ``name`` (None outside the project, or if it does not exist)."""
    top, *rest = name.split(".")
    if top not in PACKAGES:
        return None
    base = PACKAGES[top].joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    for top, folder in PACKAGES.items():
        if path.is_relative_to(folder):
            parts = path.relative_to(folder).with_suffix("").parts
            return ".".join([top, *(p for p in parts if p != "__init__")])
    raise ValueError(path)


def _with_packages(name: str) -> list[str]:
    """``a.b.c`` imports ``a``, ``a.b`` and ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _lazy_sources(init: Path) -> dict[str, str]:
    """A package's ``_SOURCES = {name: submodule}`` map (its ``__getattr__`` imports lazily)."""
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_SOURCES" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names, skipping ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            init = module_file(base)
            lazy = _lazy_sources(init) if init is not None and init.name == "__init__.py" else {}
            for alias in node.names:
                if module_file(f"{base}.{alias.name}") is not None:
                    found.add(f"{base}.{alias.name}")
                elif alias.name in lazy:
                    found.add(f"{base}.{lazy[alias.name]}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


@lru_cache(maxsize=None)
def stage_files(stage: str) -> frozenset[Path]:
    """The project files running ``python -m unlearn_pipeline <stage>`` imports."""
    from unlearn_pipeline.stages import MODULES

    todo = [RUNNER, module_file(f"unlearn_pipeline.stages.{MODULES[stage]}")]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path):
            for module in _with_packages(name):
                found = module_file(module)
                if found is not None and found not in seen:
                    todo.append(found)
    return frozenset(seen)


def _python_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def expected_deps(files: frozenset[Path]) -> list[str]:
    """The fewest deps that cover ``files`` exactly: a folder when all its .py files are imported."""
    deps = set(files)
    folders = {parent for path in files for parent in path.parents
               if parent.is_relative_to(ROOT) and parent not in (ROOT, *PACKAGES.values())
               and any(parent.is_relative_to(top) for top in PACKAGES.values())}
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):  # deepest first
        if _python_files(folder) <= files:
            deps = {d for d in deps if not d.is_relative_to(folder)} | {folder}
    return sorted(str(p.relative_to(ROOT)) for p in deps)


def _is_code(dep: str) -> bool:
    return dep.startswith(("pipeline", "src/"))


def dvc_stages() -> list[tuple[str, str, list[str]]]:
    """(pipeline file, dvc stage name, pipeline stage it runs, its code deps relative to the
    repository root) of every stage of the pipeline files."""
    rows = []
    for file in PIPELINE_FILES:
        spec = yaml.safe_load(file.read_text())
        for name, body in spec["stages"].items():
            body = body.get("do", body)
            wdir = (file.parent / body.get("wdir", ".")).resolve()
            deps = [str((wdir / d).resolve().relative_to(ROOT)) for d in body.get("deps", [])
                    if not str(d).startswith("$")]
            stage = body["cmd"].split("-m unlearn_pipeline ")[1].split()[0]
            rows.append((file.name if file.parent == ROOT else f"{file.parent.name}/{file.name}", name, stage,
                         [d for d in deps if _is_code(d)]))
    return rows


def mismatches(stage: str, deps: list[str]) -> list[str]:
    """What is wrong with a stage's code deps: imported files no dep covers, and deps that cover no imported file."""
    files = stage_files(stage)
    problems = []
    for path in sorted(files):
        if not any(path == ROOT / d or path.is_relative_to(ROOT / d) for d in deps):
            problems.append(f"missing a dep on {path.relative_to(ROOT)} (it is imported)")
    for dep in deps:
        covered = {p for p in files if p == ROOT / dep or p.is_relative_to(ROOT / dep)}
        if not covered:
            problems.append(f"lists {dep}, which it does not import")
        elif (ROOT / dep).is_dir():
            every = _python_files(ROOT / dep)
            if every - covered:
                problems.append(f"lists the folder {dep}, but imports only {len(covered)} of its {len(every)} files")
    return problems


@pytest.mark.parametrize("row", dvc_stages(), ids=lambda row: f"{row[0]}:{row[1]}")
def test_stage_depends_on_exactly_the_code_it_imports(row):
    _, _, stage, deps = row
    problems = mismatches(stage, deps)
    assert not problems, f"{row[0]} stage {row[1]}: " + "; ".join(problems) + f"; expected {expected_deps(stage_files(stage))}"


def test_a_removed_dep_is_caught():
    """Deliberately drop each code dep of the report stage in turn: the check must fail every time."""
    (_, _, stage, deps), = [row for row in dvc_stages() if row[1] == "evaluate"]
    assert not mismatches(stage, deps)
    for removed in deps:
        problems = mismatches(stage, [d for d in deps if d != removed])
        assert any("missing a dep" in p for p in problems), removed


def test_an_extra_pipeline_module_is_caught():
    (_, _, stage, deps), = [row for row in dvc_stages() if row[1] == "prepare"]
    assert mismatches(stage, [*deps, "pipeline/stages/sweep.py"]) == [
        "lists pipeline/stages/sweep.py, which it does not import"]


def test_a_stage_imports_its_own_module_only():
    files = {str(p.relative_to(ROOT)) for p in stage_files("evaluate")}
    assert "src/unlearn/evaluation/gap.py" in files  # the Avg Gap
    assert {f for f in files if f.startswith("pipeline/stages/")} == {"pipeline/stages/__init__.py",
                                                                      "pipeline/stages/evaluate.py"}


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


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    for file, name, stage, deps in dvc_stages():
        print(f"{file}:{name} ({stage})")
        for dep in expected_deps(stage_files(stage)):
            print(f"      - {dep}")


@pytest.mark.parametrize("pipeline", PIPELINE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_lock_holds_no_removed_stage(pipeline):
    """DVC keeps a removed stage's dvc.lock entry; every no-op `dvc repro` then parses it
    (18 such entries were 22% of dvc.lock). Drop an entry when its stage goes."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        names = {stage.name for stage in repo.stage.collect(str(pipeline))}
    locked = set(yaml.safe_load(pipeline.with_name("dvc.lock").read_text())["stages"])
    assert not locked - names, f"{pipeline.with_name('dvc.lock')}: entries of removed stages {sorted(locked - names)}"
