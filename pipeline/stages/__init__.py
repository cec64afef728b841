"""The stages, one module per stage or stage family, each function registered with ``@stage``.

``MODULES`` says which module holds each stage, so that running a stage imports that
module alone (and what it imports): a stage's code, and so its DVC dependencies, is
exactly what its module reaches. A test checks both the map and the dependencies.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from unlearn.errors import ConfigError

MODULES = {
    "prepare": "prepare",
    "import_model": "import_model", "train": "training", "retrain": "training",
    "transfer": "transfer",
    "adversarial": "adversarial",
    "references": "references", "ulira_shadows": "ulira_shadows",
    "unlearn": "unlearn", "evaluate": "evaluate",
    "retrain_class": "retrain_class", "unlearn_class": "unlearn_class", "evaluate_class": "evaluate_class",
    "sweep_cell": "sweep", "sweep_method": "sweep", "sweep_report": "sweep",
    "class_cell": "class_sweep", "class_method": "class_sweep", "class_report": "class_sweep",
    "smoothness": "smoothness", "findings": "findings",
    "memorized_scores": "memorized_study", "memorized_level": "memorized_study",
    "requests": "requests", "requests_retrain": "requests", "audit": "audit",
}


@dataclass(frozen=True)
class Stage:
    """A stage function ``fn(params, run, *items)`` and the params it reads."""

    fn: Callable
    sections: tuple[str, ...]  # the params sections the stage reads (dvc.yaml lists the same)
    untracked: tuple[str, ...] = ()  # sections it reads that cannot change its results (not in dvc.yaml)
    threads: int | None = None  # intra-op threads it is pinned to (None: torch's default)


STAGES: dict[str, Stage] = {}
STUDY_THREADS = 1  # the studies' stages: their figures then do not depend on the machine's core count


def stage(name: str, sections: tuple[str, ...] = (), untracked: tuple[str, ...] = (),
          threads: int | None = None) -> Callable:
    """Register the decorated function as stage ``name``; ``${item}`` in a section stands
    for the stage's first item (``unlearn.${item}`` -> ``unlearn.amun``). ``threads`` pins
    the stage (and the jobs it spawns) to that many intra-op threads: the studies use 1, so
    that their figures are the same on 2 cores and on 32 of the same CPU type."""
    def decorator(fn: Callable) -> Callable:
        if name in STAGES:
            raise ValueError(f"stage {name!r} is already registered")
        if name not in MODULES or fn.__module__ != f"{__name__}.{MODULES[name]}":
            raise ValueError(f"stage {name!r}: MODULES places it in {MODULES.get(name)!r}, not {fn.__module__}")
        STAGES[name] = Stage(fn, sections, untracked, threads)
        return fn

    return decorator


def load_stage(name: str) -> Stage:
    """Import the module of stage ``name`` and return the stage."""
    if name not in MODULES:
        raise ConfigError(f"unknown stage {name!r}; known: {', '.join(sorted(MODULES))}")
    importlib.import_module(f"{__name__}.{MODULES[name]}")
    return STAGES[name]


def load_all() -> dict[str, Stage]:
    """Every stage (imports every stage module)."""
    for name in MODULES:
        load_stage(name)
    return dict(STAGES)
