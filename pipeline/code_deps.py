"""The code each stage runs, as one DVC dependency per stage.

``python -m unlearn_pipeline.code_deps data/code`` (dvc.yaml's stage ``code``) writes
``data/code/<stage>.txt`` for every stage of :data:`unlearn_pipeline.stages.MODULES`: the sha256
and path of every project file that ``python -m unlearn_pipeline <stage>`` imports. Each stage of
both dvc.yaml files depends on its own file rather than on its 20-50 code files, so:

- an edit re-runs exactly the stages that import the edited file: their file's content changes,
  the others' does not (stage ``code`` itself re-runs on any edit under ``pipeline/`` or
  ``src/unlearn/``; the command takes about 0.3 s);
- dvc.lock holds one code entry per stage instead of about 40. DVC rewrites the whole lock after
  every stage it runs; at 7,322 lines that took 2.0 s a stage (ruamel.yaml's round trip), and
  every no-op ``dvc repro`` parsed it.

The files a stage imports are found by static analysis: from the stage runner
(``pipeline/__main__.py``) and the stage's module, every ``import`` reached, transitively, inside
``pipeline/`` and ``src/unlearn/`` (function-level imports included, ``if TYPE_CHECKING:`` blocks
excluded; a package's ``__init__`` counts when anything in it is imported; a lazy package
``__getattr__`` is followed through its ``_SOURCES`` map).
"""

from __future__ import annotations

import ast
import hashlib
import sys
from functools import lru_cache
from pathlib import Path

PACKAGES = {"unlearn_pipeline": Path("pipeline"), "unlearn": Path("src") / "unlearn"}
RUNNER = Path("pipeline") / "__main__.py"


def module_file(name: str, root: Path = Path(".")) -> Path | None:
    """The project file of module ``name``, relative to ``root`` (None outside the project, or if it does not exist)."""
    top, *rest = name.split(".")
    if top not in PACKAGES:
        return None
    base = PACKAGES[top].joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / candidate).is_file():
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


def imported_modules(path: Path, root: Path = Path(".")) -> frozenset[str]:
    """Every module an import statement of ``path`` names, skipping ``if TYPE_CHECKING:`` blocks."""
    return _imported_modules(path, root, _version(root / path))


def _version(path: Path) -> tuple[int, int]:
    """What tells one content of a file from the next in this process's caches."""
    info = path.stat()
    return info.st_mtime_ns, info.st_size


@lru_cache(maxsize=None)
def _imported_modules(path: Path, root: Path, version: tuple[int, int]) -> frozenset[str]:
    """Parsed once per file version (the stages share most of their files)."""
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
            init = module_file(base, root)
            lazy = _lazy_sources(root / init) if init is not None and init.name == "__init__.py" else {}
            for alias in node.names:
                if module_file(f"{base}.{alias.name}", root) is not None:
                    found.add(f"{base}.{alias.name}")
                elif alias.name in lazy:
                    found.add(f"{base}.{lazy[alias.name]}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse((root / path).read_text()))
    return frozenset(found)


def stage_files(stage: str, root: Path = Path(".")) -> frozenset[Path]:
    """The project files (relative to ``root``) that ``python -m unlearn_pipeline <stage>`` imports."""
    from unlearn_pipeline.stages import MODULES

    todo = [RUNNER, module_file(f"unlearn_pipeline.stages.{MODULES[stage]}", root)]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path, root):
            for module in _with_packages(name):
                found = module_file(module, root)
                if found is not None and found not in seen:
                    todo.append(found)
    return frozenset(seen)


def _sha256(path: Path) -> str:
    return _hash_of_version(path, _version(path))


@lru_cache(maxsize=None)
def _hash_of_version(path: Path, version: tuple[int, int]) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(stage: str, root: Path = Path(".")) -> str:
    """``<sha256>  <path>`` of every file the stage imports, sorted by path."""
    lines = [f"{_sha256(root / path)}  {path.as_posix()}"
             for path in sorted(stage_files(stage, root))]
    return f"# the code `python -m unlearn_pipeline {stage}` imports (unlearn_pipeline.code_deps)\n" + "\n".join(lines) + "\n"


def write_fingerprints(folder: Path, root: Path = Path(".")) -> list[Path]:
    """``folder/<stage>.txt`` for every stage; the files written."""
    from unlearn_pipeline.stages import MODULES

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stage in sorted(MODULES):
        path = folder / f"{stage}.txt"
        path.write_text(fingerprint(stage, root))
        written.append(path)
    return written


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m unlearn_pipeline.code_deps <folder>")
    write_fingerprints(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
