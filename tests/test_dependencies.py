"""The installed engines are the ones pyproject.toml declares: the code relies on APIs that
older releases lack (Ray's token authentication and tune.report, MLflow 3's
log_model(name=...)), so the lower bounds are where those APIs begin."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
DECLARED = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]


@pytest.mark.parametrize("line", DECLARED)
def test_installed_version_satisfies_the_declared_range(line):
    req = Requirement(line)
    assert req.specifier.contains(version(req.name), prereleases=True), (line, version(req.name))


def test_the_apis_the_bounds_stand_for_exist():
    import inspect

    import mlflow.pytorch
    from ray import tune

    assert "name" in inspect.signature(mlflow.pytorch.log_model).parameters
    assert callable(tune.report) and callable(tune.get_context) and hasattr(tune, "RunConfig")
    for line in DECLARED:
        req = Requirement(line)
        if req.name in ("ray", "mlflow", "optuna", "torch-pruning", "pydantic"):
            assert any(s.operator == "<" for s in req.specifier), f"{line}: no upper bound on a major API"
