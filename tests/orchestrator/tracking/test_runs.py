"""The runs a search leads to (orchestrator/tracking/runs.py): a prune run, and the check
that a run id names the kind of run asked for; on a real local MLflow store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.tracking import CRITERION, METHOD, ROLE, record_prune, run_with_role
from tests.orchestrator.conftest import _result
from trials.errors import UserError


def test_a_prune_run_carries_its_method_metrics_baseline_texts_and_checkpoint(store, tmp_path):
    """`prunetune prune`'s one run, as tracking.record_prune writes it."""
    uri, record = store
    checkpoint = tmp_path / "pruned.pt"
    checkpoint.write_bytes(b"weights")
    result = {**_result(0.91, 2 * 10**7), "params_ratio": 0.3, "spec": {"channels": {"g": 4}}, "criterion": "l1"}
    rid = record_prune(
        record.client,
        record.experiment_id,
        method="uniform",
        macs_target=0.2,
        result=result,
        baseline={"val_accuracy": 0.99, "macs": 1e8, "arch": "resnet20"},
        texts={"config.yaml": "name: exp\n"},
        checkpoint=checkpoint,
    )
    run = MlflowClient(uri).get_run(rid)
    assert run.info.status == "FINISHED" and run.data.tags[ROLE] == "prune"
    assert run.data.tags[METHOD] == "uniform" and run.data.tags[CRITERION] == "l1"
    assert run.data.params == {"method": "uniform", "macs_target": "0.2"}
    assert run.data.metrics["val_accuracy"] == 0.91 and run.data.metrics["baseline_macs"] == 1e8
    assert "baseline_arch" not in run.data.metrics  # only numbers are metrics
    paths = {a.path for a in MlflowClient(uri).list_artifacts(rid)} | {
        a.path for a in MlflowClient(uri).list_artifacts(rid, "model")
    }
    assert {"spec.json", "config.yaml", "model/pruned.pt"} <= paths


def test_run_with_role_returns_the_run_or_names_what_is_wrong(store):
    uri, record = store
    client = MlflowClient(uri)
    record.log_final("t0", {"stage0": 0.5}, _result(0.8, 10**7))
    trial_id = record.child("t0")
    assert run_with_role(client, trial_id, "trial").info.run_id == trial_id
    with pytest.raises(UserError, match="is not a prunetune trial run .*prunetune.role='search'"):
        run_with_role(client, record.parent_run_id, "trial")
    with pytest.raises(UserError, match="run '0123abcd' not found in the MLflow store"):
        run_with_role(client, "0123abcd", "trial")


def test_run_with_role_tells_an_unreachable_store_from_a_missing_run(monkeypatch):
    from orchestrator.store import client_for

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's default backs off for minutes
    client = client_for("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(UserError, match="cannot be reached"):
        run_with_role(client, "0123abcd", "trial")
