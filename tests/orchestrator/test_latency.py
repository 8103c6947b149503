"""The latency model of a search (orchestrator.latency): built and checked where latency is
measured (this process, when no Ray is up), cached beside the baseline, logged to a real
local MLflow store once; round_to auto taken from its cache."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

import orchestrator.latency as latency
from orchestrator.baseline import Baseline
from orchestrator.config import validate_config
from trials.baseline import ModelInfo
from trials.models import create_model

INFO = ModelInfo("resnet20", 10, 1, 8)


@pytest.fixture
def setting(tmp_path):
    cfg = validate_config(
        {
            "name": "lat",
            "storage": str(tmp_path / "runs"),
            "search": {"objective": "latency", "round_to": "auto"},
            "latency": {"warmup": 1, "repeats": 3, "table_levels": 2},
        }
    )
    base = Baseline(create_model("resnet20", in_channels=1), {"val_accuracy": 0.9, "macs": 1e7}, INFO)
    return cfg, base


def test_the_table_is_built_checked_cached_and_logged_once(setting, tmp_path, monkeypatch):
    cfg, base = setting
    said = []
    table, check = latency.latency_table(cfg, base, said.append)
    assert "timing every layer shape over 2 channel counts" in said[0] and "median error" in said[-1]
    assert check["n"] == latency.CHECK_NETWORKS and 0 <= check["median_rel_error"] <= check["worst_rel_error"]
    assert table.predict(table.sizes) > 0

    def not_again(*_a):
        raise AssertionError("measured again despite the cache")

    monkeypatch.setattr(latency, "build_and_check", not_again)
    again, check2 = latency.latency_table(cfg, base, said.append)
    assert "loaded the latency model" in said[-2] and json.dumps(check2) == json.dumps(check)
    assert again.to_dict() == json.loads(json.dumps(table.to_dict()))
    aligned = cfg.model_copy(update={"search": cfg.search.model_copy(update={"round_to": 8})})
    assert latency._key(aligned, base) != latency._key(cfg, base)  # its networks keep multiples of 8: another table
    other = cfg.model_copy(update={"latency": cfg.latency.model_copy(update={"batch_size": 4})})
    with pytest.raises(AssertionError, match="measured again"):
        latency.latency_table(other, base)  # another batch is another table

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("lat")).info.run_id
    latency.log_latency_model(client, run_id, table, check)
    latency.log_latency_model(client, run_id, table, check)  # a resume: not twice
    paths = [a.path for a in client.list_artifacts(run_id, latency.LATENCY_DIR)]
    assert sorted(paths) == ["latency/check.json", "latency/table.json"]
    metrics = client.get_run(run_id).data.metrics
    assert metrics["latency_model_median_rel_error"] == pytest.approx(check["median_rel_error"])
    assert metrics["baseline_latency_pred_ms"] == pytest.approx(table.predict(table.sizes))


def test_round_to_auto_is_put_in_from_its_cache_and_a_given_multiple_is_left(setting, tmp_path):
    cfg, base = setting
    given = cfg.model_copy(update={"search": cfg.search.model_copy(update={"round_to": 8})})
    assert latency.resolve_round_to(given, base) is given
    report = {"round_to": 4, "layer": "layer3.0.conv1", "evidence": {"4": {"real": True}, "8": {"real": False}}}
    path = latency._round_to_path(cfg, base)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(report))
    said = []
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("lat")).info.run_id
    resolved = latency.resolve_round_to(cfg, base, said.append)
    latency.log_round_to(cfg, base, client, run_id)
    assert resolved.search.round_to == 4 and cfg.search.round_to == "auto"
    assert "channel multiples of 4 (layer3.0.conv1; latency steps by multiple 4: step, 8: none)" in said[-1]
    assert client.get_run(run_id).data.metrics["round_to_auto"] == 4
