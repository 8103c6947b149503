"""prunetune sync (orchestrator.sync): the spill file a search left while MLflow was down,
written once it is back, into a real local MLflow store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.sync import patience, sync
from orchestrator.writer import Spill
from tests.orchestrator.conftest import _children, _result
from trials.errors import UserError


def test_sync_writes_the_spill_once_and_says_when_there_is_nothing(store, tmp_path, monkeypatch):
    uri, record = store
    path = tmp_path / "runs" / "exp" / "mlflow-pending.json"
    said = []
    assert sync("exp", tmp_path / "runs", uri, said.append) == 0 and "nothing to sync" in said[0]

    writes = [{"op": "log_final", "args": [f"t{i}", {"stage0": 0.5}, _result(0.8 + i / 100, 10**7)]} for i in range(2)]
    Spill(path, experiment="exp", parent_run_id=record.parent_run_id).add(writes=writes)
    assert sync("exp", tmp_path / "runs", uri, said.append) == 2
    assert sorted(_children(uri, record)) == ["t0", "t1"] and not path.exists()
    assert sync("exp", tmp_path / "runs", uri, said.append) == 0  # once
    assert all(
        r.info.status == "FINISHED"
        for r in MlflowClient(uri).search_runs([record.experiment_id])
        if r.info.run_id != record.parent_run_id
    )

    Spill(path, experiment="exp").add(writes=writes[:1])  # no search run: from before sync existed
    with pytest.raises(UserError, match="names no search run"):
        sync("exp", tmp_path / "runs", uri)
    monkeypatch.setenv("PRUNETUNE_MLFLOW_PATIENCE", "7")
    assert patience() == 7.0
