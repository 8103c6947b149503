"""The packages' layering, read from the source: trials imports none of Ray, MLflow,
Optuna or the other packages; cluster does not import orchestrator; no two files import
each other at module level; every module has its test file."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trials", "cluster", "orchestrator")


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def _files(pkg: str) -> list[Path]:
    return sorted((ROOT / pkg).rglob("*.py"))


def test_trials_is_free_of_the_engines_and_of_the_other_packages():
    for f in _files("trials"):
        roots = {m.split(".")[0] for m in _imports(f)}
        assert not roots & {"ray", "mlflow", "optuna", "orchestrator", "cluster"}, f


def test_cluster_does_not_import_orchestrator():
    for f in _files("cluster"):
        assert not any(m.split(".")[0] == "orchestrator" for m in _imports(f)), f


def test_no_two_files_import_each_other_at_module_level():
    module_of = {}
    for pkg in PACKAGES:
        for f in _files(pkg):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            module_of[name] = f
    edges = {
        m: {i for i in _imports(f, top_level_only=True) if i in module_of and i != m} for m, f in module_of.items()
    }
    cycles = sorted((a, b) for a, deps in edges.items() for b in deps if a in edges.get(b, ()) and a < b)
    assert not cycles, cycles


def test_every_module_has_its_test_file_where_the_layout_says():
    """tests/<package>/test_<module>.py for every module (ARCHITECTURE.md, "The tests")."""
    missing = [
        str(path.relative_to(ROOT))
        for pkg in PACKAGES
        for path in _files(pkg)
        if path.name != "__init__.py"
        and "__pycache__" not in path.parts
        and not (ROOT / "tests" / path.parent.relative_to(ROOT) / f"test_{path.name}").is_file()
    ]
    assert not missing, f"modules without tests/<package>/test_<module>.py: {missing}"
