"""Fixtures shared by the MLflow-record tests: a real local MLflow store with one search."""

from __future__ import annotations

import pytest

from orchestrator.tracking import SearchRecord


@pytest.fixture
def store(tmp_path):
    """(tracking URI, SearchRecord) of a search in a fresh sqlite store, baseline logged."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    record = SearchRecord.open(uri, "exp", str(tmp_path / "runs"), resume=False)
    record.log_baseline({"val_accuracy": 0.99, "macs": 1e8})
    return uri, record
