"""The MLflow record's contract (DESIGN.md), one suite run against both stores a user
points prunetune at: a local SQLite store and a real tracking server (the session's,
tests/conftest.py). What is checked is what the UI, `pareto`, `promote` and a resume
read back: the search run, its trial runs, the front's tags and artifacts, the baseline
checkpoint, a promote run and the registry alias."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import mlflow.artifacts
import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator import promote, readback, tracking
from orchestrator.config import dump_config, flat_config, validate_config
from orchestrator.store import EXPERIMENT_KIND
from orchestrator.tracking import BASELINE_ARTIFACT, CRITERION, PARETO, ROLE, TRIAL_ID, SearchRecord
from trials.baseline import ModelInfo, read_checkpoint
from trials.models import create_model
from trials.spec import ChannelSpec

INFO = ModelInfo("resnet20", 10, 1, 8)
POINTS = {"t1": (0.90, 0.30), "t2": (0.85, 0.50), "t3": (0.95, 0.60), "t4": (0.80, 0.20)}  # acc, macs ratio
FRONT = {"t1", "t3", "t4"}  # t2 is dominated by t1 (more accurate at fewer MACs)


@pytest.fixture(scope="module", params=["sqlite", "server"])
def searched(request, tmp_path_factory):
    """(URI, the record of one finished search, its storage), once per store."""
    tmp = tmp_path_factory.mktemp(request.param)
    uri = f"sqlite:///{tmp}/mlflow.db" if request.param == "sqlite" else request.getfixturevalue("mlflow_server")
    name = f"contract-{request.param}"
    storage = validate_config({"name": name, "storage": str(tmp / "runs")}).storage_uri()
    return uri, _search(uri, name, tmp), storage


def _result(acc: float, ratio: float) -> dict:
    return {
        "val_accuracy": acc,
        "val_loss": 1 - acc,
        "macs": int(ratio * 1e8),
        "macs_ratio": ratio,
        "params": 1000,
        "params_ratio": ratio,
        "epoch": 2,
        "spec_json": json.dumps({"channels": {"layer1": 8}}),
        "criterion": "l1",
        "node_id": "n1",
    }


def _search(uri: str, name: str, tmp_path: Path) -> SearchRecord:
    cfg = validate_config({"name": name, "storage": str(tmp_path / "runs")})
    record = SearchRecord.open(uri, name, cfg.storage_uri(), resume=False)
    record.log_config(dump_config(cfg), flat_config(cfg.model_dump(mode="json")))
    record.log_baseline({"val_accuracy": 0.97, "macs": 1e8, "params": 1000})
    record.log_baseline_checkpoint(create_model(INFO.arch, num_classes=10, in_channels=1), INFO)
    for trial_id, (acc, ratio) in POINTS.items():
        params = {"stage1": ratio, "stage2": ratio}
        record.log_epoch(trial_id, params, {**_result(acc, ratio), "epoch": 1, "train_loss": 0.3})
        record.log_final(trial_id, params, _result(acc, ratio))
    record.finish()
    return record


def test_a_search_is_one_parent_run_with_its_config_baseline_and_front(searched):
    uri, record, _ = searched
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(record.experiment)
    assert exp.tags.get("mlflow.experimentKind") == EXPERIMENT_KIND["mlflow.experimentKind"]
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get(ROLE) == "search"]
    assert [p.info.run_id for p in parents] == [record.parent_run_id]
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["name"] == record.experiment
    assert parent.data.params["search.mode"] == "front" and parent.data.metrics["baseline_val_accuracy"] == 0.97
    assert "front_hypervolume" in parent.data.metrics and parent.data.tags.get("mlflow.note.content")
    top = {a.path for a in client.list_artifacts(record.parent_run_id)}
    assert {"config.yaml", "baseline", "pareto"} <= top
    front_files = {a.path for a in client.list_artifacts(record.parent_run_id, "pareto")}
    assert front_files == {f"pareto/front.{ext}" for ext in ("json", "csv", "html", "png")}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = client.download_artifacts(record.parent_run_id, BASELINE_ARTIFACT, tmp)
        stored = read_checkpoint(ckpt)
        assert (stored["arch"], stored["input_size"]) == (INFO.arch, INFO.input_size) and stored["state_dict"]
        front = json.loads(Path(client.download_artifacts(record.parent_run_id, "pareto/front.json", tmp)).read_text())
    on_front = {r["trial"] for r in front["trials"] if r["pareto"] and not r.get("baseline")}
    assert on_front == FRONT and front["baseline"]["val_accuracy"] == 0.97


def test_each_trial_is_a_child_run_with_its_metrics_spec_and_front_tag(searched):
    uri, record, _ = searched
    client = MlflowClient(uri)
    children = client.search_runs([record.experiment_id], f"tags.`{ROLE}` = 'trial'")
    assert {c.data.tags[TRIAL_ID] for c in children} == set(POINTS)
    for c in children:
        trial_id, (acc, ratio) = c.data.tags[TRIAL_ID], POINTS[c.data.tags[TRIAL_ID]]
        assert c.data.tags["mlflow.parentRunId"] == record.parent_run_id and c.info.status == "FINISHED"
        assert c.data.metrics["val_accuracy"] == acc and c.data.metrics["macs_ratio"] == ratio
        assert c.data.params == {"stage1": str(ratio), "stage2": str(ratio)}
        assert c.data.tags[PARETO] == ("true" if trial_id in FRONT else "false")
        assert c.data.tags[CRITERION] == "l1" and c.data.tags["prunetune.node_id"] == "n1"
        assert [m.step for m in client.get_metric_history(c.info.run_id, "val_accuracy")] == [1, 2]
        assert {a.path for a in client.list_artifacts(c.info.run_id)} == {"spec.json"}
    # the UI's filter for the front, as the README gives it
    tagged = client.search_runs([record.experiment_id], f"tags.`{PARETO}` = 'true'")
    assert {r.data.tags[TRIAL_ID] for r in tagged} == FRONT
    rows, baseline = readback.read_front(uri, record.experiment)
    assert {r["trial"] for r in rows if r["pareto"] and not r.get("baseline")} == FRONT
    assert baseline["val_accuracy"] == 0.97


def test_a_resumed_record_finds_its_runs_instead_of_making_new_ones(searched):
    uri, record, storage = searched
    again = SearchRecord.open(uri, record.experiment, storage, resume=True)
    assert again.parent_run_id == record.parent_run_id
    assert set(again.finished) == set(POINTS) and again.child("t1") == record.children["t1"]
    stored = readback.stored_config(uri, record.experiment, storage)
    assert stored["search.mode"] == "front" and stored["name"] == record.experiment


def test_a_promote_run_carries_the_model_its_metadata_and_the_registry_alias(searched):
    uri, record, _ = searched
    client = MlflowClient(uri)
    trial = client.get_run(record.children["t1"])
    cfg = validate_config({"name": record.experiment})
    model = create_model(INFO.arch, num_classes=10, in_channels=1).eval()
    spec = ChannelSpec.from_ratios([], 1.0, 1, INFO.arch)
    opts = promote.PromoteOptions(epochs=1, workers=1, register_as=f"{record.experiment}-model")
    history = [{"epoch": 1, "train_loss": 0.4, "val_accuracy": 0.91, "val_loss": 0.3}]
    metrics = {"val_accuracy": 0.91, "test_accuracy": 0.9, "macs_ratio": 0.3}
    run_id = tracking.open_promote_run(client, trial, INFO)
    meta = promote.promoted_meta(trial, cfg, INFO, spec)
    tracking.record_promotion(
        client, run_id, model, meta=meta, metrics=metrics, history=history, opts=opts, tracking_uri=uri
    )
    run = client.get_run(run_id)
    assert run.data.tags[ROLE] == "promote" and run.info.status == "FINISHED"
    assert run.data.tags["prunetune.trial_run_id"] == trial.info.run_id
    assert run.data.tags["prunetune.search_run_id"] == record.parent_run_id
    assert run.data.metrics["test_accuracy"] == 0.9
    assert {a.path for a in client.list_artifacts(run_id, "prunetune")} == {
        tracking.MODEL_META,
        tracking.MODEL_STATE,
    }
    version = client.get_model_version_by_alias(f"{record.experiment}-model", "candidate")
    assert version.run_id == run_id
    assert run.data.tags["prunetune.registered"] == f"{record.experiment}-model@candidate (v{version.version})"
    with tempfile.TemporaryDirectory() as tmp:
        meta = json.loads(Path(client.download_artifacts(run_id, tracking.MODEL_META, tmp)).read_text())
        state = torch.load(client.download_artifacts(run_id, tracking.MODEL_STATE, tmp), weights_only=True)
    assert meta["arch"] == INFO.arch and meta["criterion"] == "l1"
    assert state.keys() == model.state_dict().keys()
    # the registered model names what loads it, pinned to this environment (not inferred)
    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(mlflow.artifacts.download_artifacts(f"models:/{record.experiment}-model@candidate", dst_path=tmp))
        lines = (reqs / "requirements.txt").read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in lines and f"mlflow=={mlflow.__version__}" in lines, lines
