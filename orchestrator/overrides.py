"""``--set dotted.key=value``: overrides applied to a config's YAML before validation,
each value read as YAML (so ``--set search.warm_start=[0.5,0.7]`` is a list)."""

from __future__ import annotations

import yaml

from trials.errors import UserError


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _parse_override(item: str) -> tuple[list[str], object]:
    if "=" not in item:
        raise UserError(f"--set '{item}': expected dotted.key=value")
    key, raw = item.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set '{item}': '{key}' is not a dotted key")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError as exc:
        raise UserError(f"--set {key}: cannot parse value '{raw}' ({yaml_problem(exc)})") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, value = _parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {'.'.join(path)}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data
