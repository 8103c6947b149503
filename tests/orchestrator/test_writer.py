"""The buffered MLflow writer and its spill file, on a real local MLflow store (no Tune)."""

from __future__ import annotations

import json
import socket

import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE
from mlflow.tracking import MlflowClient

from orchestrator.tracking import SearchRecord
from orchestrator.writer import BufferedWriter, Spill, is_outage, replay_spill


def _result(acc: float) -> dict:
    return {
        "val_accuracy": acc,
        "val_loss": 0.1,
        "macs": 10**7,
        "macs_ratio": 0.1,
        "params": 10,
        "epoch": 1,
        "spec_json": json.dumps({"channels": {"g": 4}}),
    }


def _children(uri: str, rec: SearchRecord) -> dict:
    runs = MlflowClient(uri).search_runs([rec.experiment_id], f"tags.`mlflow.parentRunId` = '{rec.parent_run_id}'")
    return {r.data.tags["prunetune.trial_id"]: r for r in runs}


def test_outages_are_told_from_refusals():
    assert is_outage(ConnectionError("refused")) and is_outage(requests.ConnectionError("down"))
    assert is_outage(MlflowException("API request failed: Max retries exceeded"))  # INTERNAL_ERROR: 500
    assert is_outage(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    assert not is_outage(MlflowException("bad key", error_code=INVALID_PARAMETER_VALUE))
    assert not is_outage(TypeError("not serialisable"))


def test_a_write_mlflow_refuses_is_set_aside_once_and_later_writes_go_on(store, tmp_path):
    uri, rec = store
    lines: list[str] = []
    spill = Spill(tmp_path / "spill.json", experiment="exp", parent_run_id=rec.parent_run_id)
    writer = BufferedWriter(lambda: SearchRecord(uri, "exp", rec.parent_run_id), spill, say=lines.append)
    writer.put("log_final", "t0", {"stage0": 0.5}, _result(0.9))
    writer.put("log_final", "t1", {"bad key!?": 0.5}, _result(0.8))  # MLflow refuses this param name
    writer.put("log_final", "t2", {"stage0": 0.7}, _result(0.7))
    assert writer.drain(10.0)
    runs = _children(uri, rec)
    assert runs["t0"].info.status == "FINISHED" and runs["t2"].info.status == "FINISHED"
    refused = [line for line in lines if "refused" in line]
    assert len(refused) == 1 and "t1" in refused[0] and "log_final" in refused[0]
    saved = json.loads((tmp_path / "spill.json").read_text())
    assert [w["args"][0] for w in saved["rejected"]] == ["t1"] and saved["writes"] == []


def test_a_spill_is_replayed_in_order_once_and_removed(store, tmp_path):
    uri, rec = store
    with socket.socket() as s:  # a port nothing listens on: the outage lasts the whole drain
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    path = tmp_path / "spill.json"
    spill = Spill(path, experiment="exp", parent_run_id=rec.parent_run_id)
    writer = BufferedWriter(lambda: SearchRecord(dead, "exp", rec.parent_run_id), spill, say=lambda _t: None)
    import os

    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        for i in range(3):
            writer.put("log_epoch", f"t{i}", {"stage0": 0.5}, {**_result(0.5), "epoch": 1})
            writer.put("log_final", f"t{i}", {"stage0": 0.5}, _result(0.9 - i / 10))
        assert not writer.drain(0.5)
    finally:
        del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    spill.add(finished=True)  # the search ended while MLflow was down
    assert [w["op"] for w in json.loads(path.read_text())["writes"]] == ["log_epoch", "log_final"] * 3

    opened = []

    def open_record(experiment, parent):
        opened.append((experiment, parent))
        return SearchRecord(uri, experiment, parent)

    assert replay_spill(Spill(path), open_record, say=lambda _t: None) == 6
    assert opened == [("exp", rec.parent_run_id)] and not path.exists()
    runs = _children(uri, rec)
    assert sorted(runs) == ["t0", "t1", "t2"] and all(r.info.status == "FINISHED" for r in runs.values())
    parent = MlflowClient(uri).get_run(rec.parent_run_id)
    assert parent.info.status == "FINISHED"  # the search had ended: the replay closed it with its front
    assert {a.path for a in MlflowClient(uri).list_artifacts(rec.parent_run_id, "pareto")} >= {"pareto/front.json"}
    assert replay_spill(Spill(path), open_record, say=lambda _t: None) == 0  # once


def test_the_writer_survives_pickling_without_its_thread(store, tmp_path):
    import pickle

    uri, rec = store
    writer = BufferedWriter(lambda: SearchRecord(uri, "exp", rec.parent_run_id), Spill(tmp_path / "s.json"))
    writer.put("log_final", "t0", {"stage0": 0.5}, _result(0.9))
    writer.stop(5.0)
    copy = pickle.loads(pickle.dumps(writer))
    assert copy._thread is None and copy.open_target is None
