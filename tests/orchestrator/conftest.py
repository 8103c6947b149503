"""Fixtures shared by the MLflow-record tests: a real local MLflow store with one search."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.tracking import SearchRecord


@pytest.fixture
def store(tmp_path):
    """(tracking URI, SearchRecord) of a search in a fresh sqlite store, baseline logged."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    record = SearchRecord.open(uri, "exp", str(tmp_path / "runs"), resume=False)
    record.log_baseline({"val_accuracy": 0.99, "macs": 1e8})
    return uri, record


class Counted:
    """The real client, with its calls counted."""

    def __init__(self, client) -> None:
        self._client, self.calls = client, Counter()

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*a, **kw):
            self.calls[name] += 1
            return attr(*a, **kw)

        return call


def _points(n: int, seed: int = 0) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    return [(round(rng.uniform(0.5, 0.99), 3), rng.randrange(10, 100) * 1_000_000) for _ in range(n)]


def _result(acc: float, macs: int, epoch: int = 2) -> dict:
    return {
        "val_accuracy": acc,
        "val_loss": 1 - acc,
        "train_loss": 0.5,
        "macs": macs,
        "macs_ratio": macs / 1e8,
        "params": 1000,
        "epoch": epoch,
        "spec_json": json.dumps({"channels": {"g": 4}}),
        "node_id": "n1",
    }


def _children(uri: str, record: SearchRecord) -> dict:
    client = MlflowClient(uri)
    runs = client.search_runs([record.experiment_id], f"tags.`mlflow.parentRunId` = '{record.parent_run_id}'")
    return {r.data.tags["prunetune.trial_id"]: r for r in runs}


def _timed(acc: float, macs: int, latency_ratio: float) -> dict:
    return {**_result(acc, macs), "latency_ms": 4.0 * latency_ratio, "latency_ratio": latency_ratio}


def _latency_search(tmp_path) -> tuple[str, SearchRecord]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    record = SearchRecord.open(uri, "exp", str(tmp_path / "runs"), resume=False, objective="latency")
    record.log_config("search: {objective: latency}\n", {"search.objective": "latency"})
    record.log_baseline({"val_accuracy": 0.99, "macs": 1e8, "latency_ms": 4.0})
    # (acc, MACs, latency ratio): "few_macs" halves MACs of "fast" but is slower than it at the same accuracy
    for tid, (acc, macs, lat) in {
        "fast": (0.95, 6 * 10**7, 0.5),
        "few_macs": (0.95, 3 * 10**7, 0.8),
        "fastest": (0.90, 5 * 10**7, 0.3),
    }.items():
        record.log_final(tid, {"stage0": 0.5}, _timed(acc, macs, lat))
    record.finish()
    return uri, record
