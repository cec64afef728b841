"""``unlearn preset NAME``: apply ``presets/NAME.yaml`` to params.yaml, keeping its comments.

A preset is a nested mapping of params.yaml keys to new values. Each leaf replaces the
value on its line of params.yaml (the line's comment stays); a key params.yaml lacks is
added at the end of its section. Its optional ``drop`` lists sections to remove first (a
method's section: the method leaves the graph). The result is validated before it is written, so a
preset that would make params.yaml invalid changes nothing. Only params.yaml's own block
style is understood (one ``key: value`` per line, nested by indentation), which is how
the project writes it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from unlearn.errors import ConfigError

PRESETS = Path("presets")
_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?P<value>[^#]*?)(?P<comment>\s*#.*)?$")


def available(root: Path = Path(".")) -> list[str]:
    return sorted(path.stem for path in (root / PRESETS).glob("*.yaml"))


def _scalar(value: Any) -> str:
    """``value`` as YAML on one line (flow style for lists and mappings)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _leaves(tree: dict, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(key path, value) of every leaf; a mapping is a leaf only when it is empty."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, (*prefix, str(key))))
        else:
            out.append(((*prefix, str(key)), value))
    return out


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """The index after the last line of the block that starts after line ``start`` (its children
    are indented more than ``indent``; blank and comment-only lines inside it belong to it)."""
    end = start + 1
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(lines[i]) - len(lines[i].lstrip(" ")) <= indent:
            break
        end = i + 1
    return end


def _find(lines: list[str], path: tuple[str, ...]) -> tuple[int | None, int, int, int]:
    """Where ``path`` is in params.yaml's ``lines``: (its line, or None when missing from ``depth``
    on; the depth reached; the end and the indent of the innermost block found)."""
    lo, hi, indent = 0, len(lines), -1
    for depth, key in enumerate(path):
        found = next((i for i in range(lo, hi) if (m := _LINE.match(lines[i])) and m["key"] == key
                      and len(m["indent"]) > indent and not (indent < 0 and m["indent"])), None)
        if found is None or depth == len(path) - 1:
            return found, depth, hi, indent
        indent = len(lines[found]) - len(lines[found].lstrip(" "))
        lo, hi = found + 1, _block_end(lines, found, indent)
    raise AssertionError("unreachable")


def set_value(text: str, path: tuple[str, ...], value: Any) -> str:
    """``text`` (params.yaml) with ``path`` set to ``value``, comments kept."""
    lines = text.split("\n")
    i, depth, hi, indent = _find(lines, path)
    if i is None:  # add the missing keys at the end of the enclosing block
        child = " " * (indent + 2 if indent >= 0 else 0)
        new = [f"{' ' * (len(child) + 2 * n)}{part}:" for n, part in enumerate(path[depth:-1])]
        new.append(f"{' ' * (len(child) + 2 * len(path[depth:-1]))}{path[-1]}: {_scalar(value)}")
        lines[hi:hi] = new
        return "\n".join(lines)
    match = _LINE.match(lines[i])
    line = f"{match['indent']}{path[-1]}: {_scalar(value)}"
    if match["comment"]:  # at its old column when the new value leaves room
        line = f"{line.ljust(lines[i].index('#', match.start('comment')) - 1)} {match['comment'].strip()}"
    lines[i:_block_end(lines, i, len(match["indent"]))] = [line]
    return "\n".join(lines)


def drop_section(text: str, path: tuple[str, ...]) -> str:
    """``text`` (params.yaml) without the block of ``path`` (its line and everything nested under it)."""
    lines = text.split("\n")
    i = _find(lines, path)[0]
    if i is None:
        raise ConfigError(f"preset: drop {'.'.join(path)}: params.yaml has no such section")
    del lines[i:_block_end(lines, i, len(lines[i]) - len(lines[i].lstrip(" ")))]
    return "\n".join(lines)


def apply(text: str, preset: dict) -> str:
    """``text`` with the sections the preset's ``drop`` list names (dotted paths, e.g.
    ``unlearn.ssd``: a method the preset leaves out of the graph) removed, then its values set."""
    preset = dict(preset)
    for dotted in preset.pop("drop", []):
        text = drop_section(text, tuple(dotted.split(".")))
    for path, value in _leaves(preset):
        text = set_value(text, path, value)
    return text


def _summary(path: Path) -> str:
    """The header comment's first sentence (up to a ':' or '. ' outside parentheses)."""
    text = " ".join(line.lstrip("# ").strip() for line in path.read_text().splitlines()
                    if line.startswith("#") and not line.startswith("# |"))
    depth = 0
    for i, char in enumerate(text):
        depth += (char == "(") - (char == ")")
        if depth == 0 and (char == ":" or text.startswith(". ", i)):
            return text[:i]
    return text


def describe(root: Path = Path(".")) -> str:
    """One line per preset: what it runs, the data it needs, and its cost where the cost
    model applies (a preset that computes on a GPU)."""
    from unlearn_pipeline.cost import cost_table

    lines = []
    for name in available(root):
        preset = yaml.safe_load((root / PRESETS / f"{name}.yaml").read_text()) or {}
        dataset = preset.get("data", {}).get("dataset", "digits")
        needs = "digits (embedded)" if dataset == "digits" else f"{dataset} under data/raw/ or data.path"
        cost = ""
        if preset.get("execution", {}).get("device", "auto") != "cpu" and dataset != "digits":
            try:
                _, params, _, _ = _applied(name, root)
                minutes = cost_table(params, 3.0, 7.0)[1] / 60
                span = f"{minutes / 60:.1f} h" if minutes > 90 else f"{minutes:.0f} min"
                cost = f"; about {span} at 3 s per GPU epoch (`--cost`)"
            except Exception:  # e.g. a params.yaml in another style than the project's: no cost, still listed
                cost = ""
        lines.append(f"  {name}: {_summary(root / PRESETS / f'{name}.yaml')}. Needs {needs}{cost}.")
    return "presets:\n" + "\n".join(lines)


def _applied(name: str, root: Path):
    """(params.yaml's text with preset ``name`` applied, the validated params, the preset's path,
    the number of values it sets)."""
    from unlearn.config import parse_params

    path = root / PRESETS / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"preset {name!r}: {path} not found; presets: {', '.join(available(root)) or 'none'}")
    preset = yaml.safe_load(path.read_text())
    if not isinstance(preset, dict):
        raise ConfigError(f"{path}: must be a mapping of params.yaml keys, got {type(preset).__name__}")
    text = apply((root / "params.yaml").read_text(), preset)
    params = parse_params(yaml.safe_load(text), source=f"params.yaml with preset {name}")
    return text, params, path, len(_leaves(preset))


def cost(name: str, s_per_epoch: float, cpu_s_per_model: float, root: Path = Path(".")) -> int:
    """The command ``unlearn preset NAME --cost``: the preset's work table (see
    :mod:`unlearn_pipeline.cost`), applied to the current params.yaml; nothing is written."""
    from unlearn_pipeline.cost import cost_table

    if s_per_epoch <= 0 or cpu_s_per_model < 0:
        raise ConfigError(f"--s-per-epoch {s_per_epoch}, --cpu-s-per-model {cpu_s_per_model}: need s/epoch > 0 "
                          "and CPU seconds >= 0")
    _, params, path, _ = _applied(name, root)
    table, _ = cost_table(params, s_per_epoch, cpu_s_per_model)
    print(f"{path} on top of params.yaml, at {s_per_epoch:g} s per 50,000-image epoch:\n\n{table}")
    return 0


def main(name: str, root: Path = Path(".")) -> int:
    """The command: apply preset ``name`` to ``root``/params.yaml; 0 on success."""
    from unlearn.io import write_text

    text, _, path, values = _applied(name, root)  # validated: raises before any write
    params_file = root / "params.yaml"
    write_text(params_file, text)
    print(f"applied {path} to {params_file}: {values} values; `dvc repro` runs it")
    return 0
