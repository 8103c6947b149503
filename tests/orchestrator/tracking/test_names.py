"""The names of the MLflow record (orchestrator/tracking/names.py) are spelled once: no
other module of the product writes a ``prunetune.*`` tag name of its own."""

from __future__ import annotations

import ast
from pathlib import Path

from orchestrator.tracking import names

ROOT = Path(__file__).resolve().parents[3]


def _tag_names() -> list[str]:
    values = [v for k, v in vars(names).items() if k.isupper()]
    flat = [x for v in values for x in (v.values() if isinstance(v, dict) else v if isinstance(v, tuple) else [v])]
    return [x for x in flat if x.startswith("prunetune.")]


def test_every_tag_name_is_distinct_and_in_the_prunetune_namespace():
    tags = _tag_names()
    assert len(tags) >= 18 and len(tags) == len(set(tags))
    assert all(t.removeprefix("prunetune.").replace("_", "").isalpha() for t in tags), tags


def test_no_module_outside_names_spells_a_tag_name():
    home = ROOT / "orchestrator" / "tracking" / "names.py"
    found = []
    for pkg in ("orchestrator", "cluster", "trials", "bench"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == home:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and node.value.startswith("prunetune.")
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, found
