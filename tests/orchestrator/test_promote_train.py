"""Promotion's live curve (orchestrator.promote_train): rank 0 logs each epoch to the promote
run as it comes, once, and the driver prints each epoch once; MLflow out of reach costs the
curve, never the promotion. On a real local MLflow store."""

from __future__ import annotations

import threading

from mlflow.tracking import MlflowClient

from cluster.local import free_port
from orchestrator.promote_train import _live, follow


def _run(tmp_path) -> tuple[str, str]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    return uri, client.create_run(client.create_experiment("p")).info.run_id


def test_each_epoch_is_logged_once_even_when_trained_again_after_a_restart(tmp_path):
    uri, run_id = _run(tmp_path)
    live = {"uri": uri, "run_id": run_id}
    _live(live, {"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.8, "val_loss": 0.4}, 3)
    _live(live, {"epoch": 1, "train_loss": 0.9, "val_accuracy": 0.1, "val_loss": 2.0}, 3)  # retrained after a restart
    _live(live, {"epoch": 2, "train_loss": 0.3, "val_accuracy": 0.85, "val_loss": 0.3}, 3)
    _live(None, {"epoch": 3}, 3)  # no live curve asked for: nothing
    history = MlflowClient(uri).get_metric_history(run_id, "val_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.8), (2, 0.85)]


def test_an_unreachable_store_costs_the_live_curve_only(capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    live = {"uri": f"http://127.0.0.1:{free_port()}", "run_id": "r"}
    _live(live, {"epoch": 2, "train_loss": 0.5, "val_accuracy": 0.8, "val_loss": 0.4}, 3)  # returns
    assert "promote epoch 2: not logged live" in capsys.readouterr().out


def test_the_driver_prints_each_logged_epoch_once(tmp_path):
    uri, run_id = _run(tmp_path)
    live = {"uri": uri, "run_id": run_id}
    for epoch, acc in ((1, 0.8), (2, 0.85)):
        _live(live, {"epoch": epoch, "train_loss": 1 - acc, "val_accuracy": acc, "val_loss": 0.3}, 2)
    said = []
    stop = threading.Event()
    stop.set()  # the promotion ended: one last look, then return
    follow(MlflowClient(uri), run_id, 2, said.append, stop, every=0.01)
    assert said == [
        "promote epoch 1/2: train_loss 0.2000, val_accuracy 0.8000",
        "promote epoch 2/2: train_loss 0.1500, val_accuracy 0.8500",
    ]
