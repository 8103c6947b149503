"""The driver's callback (orchestrator.progress): the background writes, the progress line, the count and the front across a resume."""

from __future__ import annotations

import gc
import json
import socket
import time
from types import SimpleNamespace

from orchestrator.progress import TrackingCallback
from tests.orchestrator.conftest import _children, _points, _result, _timed


def test_the_callback_writes_in_the_background_and_drains_at_the_end(store, tmp_path):
    uri, record = store
    cb = TrackingCallback(uri, "exp", record.parent_run_id, 12, {"val_accuracy": 0.99, "macs": 1e8}, tmp_path / "s")
    lines = []
    cb.say = lines.append
    t0 = time.perf_counter()
    for i, (acc, macs) in enumerate(_points(12, seed=1)):
        trial = SimpleNamespace(trial_id=f"t{i}", config={"stage0": 0.5})
        cb.on_trial_result(0, [], trial, _result(acc, macs, epoch=1))
        cb.on_trial_result(0, [], trial, {**_result(acc, macs), "final": 1})
    cb.on_experiment_end([])
    elapsed = time.perf_counter() - t0
    assert not cb.pending and not cb.writer._thread.is_alive() and not (tmp_path / "s").exists()
    runs = _children(uri, record)
    assert len(runs) == 12 and all(r.info.status == "FINISHED" for r in runs.values())
    assert lines[-1].startswith("[12/12]") and "front" in lines[-1]
    assert 0 < cb.write_seconds <= elapsed  # the writer's own time, within the wall time it ran in


def test_a_fill_trial_is_tagged_with_the_trial_whose_shape_it_took_and_searcher_keys_are_no_params(store, tmp_path):
    from orchestrator.space import FILL, REUSE

    uri, record = store
    cb = TrackingCallback(uri, "exp", record.parent_run_id, 3, {"val_accuracy": 0.99, "macs": 1e8}, tmp_path / "s")
    cb.say = lambda line: None
    configs = [{"stage0": 0.5}, {"stage0": 0.5, FILL: "t0"}, {"stage0": 0.5, FILL: "t0", REUSE: {"x": 1}}]
    filled = [{}, {"filled_from": "t0"}, {"filled_from": "t0", "reused_from": "t1"}]  # what the trainable reports
    for i, (config, extra) in enumerate(zip(configs, filled)):
        trial = SimpleNamespace(trial_id=f"t{i}", config=config)
        cb.on_trial_result(0, [], trial, {**_result(0.9 - 0.1 * i, 5e7 - 1e7 * i), **extra, "final": 1})
    cb.on_experiment_end([])
    runs = _children(uri, record)
    assert "prunetune.filled_from" not in runs["t0"].data.tags
    assert (
        runs["t1"].data.tags["prunetune.filled_from"] == "t0" and runs["t2"].data.tags["prunetune.filled_from"] == "t0"
    )
    assert runs["t2"].data.tags["prunetune.reused_from"] == "t1"
    assert all(set(r.data.params) == {"stage0"} for r in runs.values()), {k: r.data.params for k, r in runs.items()}


def test_the_callback_freezes_the_driver_heap_every_few_hundred_trials_and_thaws_it_at_the_end(tmp_path):
    spill = tmp_path / "s"
    cb = TrackingCallback(
        None, "exp", "r0", 7, {"val_accuracy": 0.9, "macs": 1e8}, spill, say=lambda _t: None, freeze_every=3
    )
    cb._write = lambda op, *args: None  # the MLflow side is tested above; this is about gc
    frozen = []
    try:
        for i, (acc, macs) in enumerate(_points(7, seed=2)):
            cb.on_trial_result(0, [], SimpleNamespace(trial_id=f"t{i}", config={}), {**_result(acc, macs), "final": 1})
            frozen.append(gc.get_freeze_count())
        assert cb.frozen == 2
        # frozen after trials 3 and 6 (the count is of live objects: frozen ones that die leave it,
        # so after trial 6 it need not exceed the count after trial 3)
        assert frozen[1] == 0 and frozen[2] > 0 and frozen[5] > 0
        cb.on_experiment_end([])
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_the_callback_of_a_resumed_search_counts_what_is_done(tmp_path):
    cb = TrackingCallback(None, "exp", "r0", 5, {"val_accuracy": 0.9, "macs": 1e8}, tmp_path / "s")
    lines = []
    cb.say = lines.append
    cb.seed({"a": {"val_accuracy": 0.8, "macs": 10**7}, "b": {"val_accuracy": 0.85, "macs": 2 * 10**7}})
    cb._write = lambda op, *args: None
    cb.on_trial_result(0, [], SimpleNamespace(trial_id="c", config={}), {**_result(0.7, 5 * 10**6), "final": 1})
    assert lines[-1].startswith("[3/5]") and "front 3 points" in lines[-1]


def test_the_callback_state_tune_snapshots_brings_back_the_count_and_the_front(tmp_path):
    cb = TrackingCallback(None, "exp", "r0", 4, {"val_accuracy": 0.9, "macs": 1e8}, tmp_path / "s", say=lambda _t: None)
    cb._write = lambda op, *args: None
    for i, (acc, macs) in enumerate(_points(2, seed=4)):
        cb.on_trial_result(0, [], SimpleNamespace(trial_id=f"t{i}", config={}), {**_result(acc, macs), "final": 1})
    restored = TrackingCallback(None, "exp", "r0", 4, {"val_accuracy": 0.9, "macs": 1e8}, tmp_path / "s")
    lines = []
    restored.say = lines.append
    restored._write = lambda op, *args: None
    restored.set_state(cb.get_state())
    restored.on_trial_result(0, [], SimpleNamespace(trial_id="t9", config={}), {**_result(0.5, 10**6), "final": 1})
    assert lines[-1].startswith("[3/4]") and len(restored.front) >= 2


def test_a_snapshot_older_than_mlflow_still_counts_what_mlflow_holds(tmp_path):
    """A driver SIGKILLed after its 4th trial: Tune's last snapshot of the callback holds
    3, MLflow 4. The resumed count goes on from 4 (it once said [4/5] for the 5th)."""
    import orchestrator.progress as progress

    cb = TrackingCallback(None, "exp", "r0", 5, {"val_accuracy": 0.9, "macs": 1e8}, tmp_path / "s", say=lambda _t: None)
    cb._write = lambda op, *args: None
    rows = {f"t{i}": _result(acc, macs) for i, (acc, macs) in enumerate(_points(4, seed=5))}
    for tid in ("t0", "t1", "t2"):
        cb.on_trial_result(0, [], SimpleNamespace(trial_id=tid, config={}), {**rows[tid], "final": 1})
    snapshot = cb.get_state()
    restored = TrackingCallback(None, "exp", "r0", 5, {"val_accuracy": 0.9, "macs": 1e8}, tmp_path / "s")
    lines = []
    restored.say, restored._write = lines.append, lambda op, *args: None
    progress.RESTORING.update(finished=rows)  # what the driver seeded from MLflow: t0..t3
    try:
        restored.set_state(snapshot)
    finally:
        progress.RESTORING.clear()
    assert set(restored.done) == set(rows)
    restored.on_trial_result(0, [], SimpleNamespace(trial_id="t4", config={}), {**_result(0.5, 10**6), "final": 1})
    assert lines[-1].startswith("[5/5]"), lines[-1]


def test_a_callback_restored_from_a_tune_snapshot_records_where_this_driver_records(tmp_path):
    """Tune restores a run's callbacks as they were pickled when the run started; a resume
    may change the tracking URI, so the restored callback takes it from this process."""
    import pickle

    import orchestrator.progress as progress

    cb = TrackingCallback("sqlite:///old.db", "exp", "r0", 3, {"val_accuracy": 0.9, "macs": 1e8}, tmp_path / "s")
    frozen = pickle.dumps(cb)
    progress.RESTORING.update(uri="sqlite:///new.db")
    try:
        restored = pickle.loads(frozen)
    finally:
        progress.RESTORING.clear()
    assert restored.uri == "sqlite:///new.db" and restored.fault is None
    assert restored.writer.open_target.__self__ is restored  # the writer opens the record where it now lives


def test_the_progress_line_of_a_latency_search_tells_measured_latency(tmp_path):
    base = {"val_accuracy": 0.9, "macs": 1e8, "latency_ms": 4.0}
    cb = TrackingCallback(None, "exp", "r0", 3, base, tmp_path / "s", objective="latency")
    lines = []
    cb.say, cb._write = lines.append, lambda op, *args: None
    cb.on_trial_result(0, [], SimpleNamespace(trial_id="a", config={}), {**_timed(0.85, 3 * 10**7, 0.45), "final": 1})
    cb.on_trial_result(0, [], SimpleNamespace(trial_id="b", config={}), {**_timed(0.88, 2 * 10**7, 0.7), "final": 1})
    assert "1.800 ms (0.450x latency)" in lines[0] and "best at <=0.5x latency 0.8500" in lines[-1]
    assert set(cb.front.members) == {"a", "b"}  # b: fewer MACs, slower, more accurate: both on the front


def test_writes_wait_through_an_outage_and_are_saved_when_it_lasts(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spill = tmp_path / "pending.json"
    cb = TrackingCallback(f"http://127.0.0.1:{port}", "exp", "r0", 3, {"val_accuracy": 0.9, "macs": 1e8}, spill)
    cb.say = lambda _t: None
    for i in range(3):
        cb.on_trial_result(0, [], SimpleNamespace(trial_id=f"t{i}", config={}), {**_result(0.9, 10**7), "final": 1})
    assert len(cb.done) == 3  # progress does not wait for MLflow
    assert not cb.drain(1.0)
    saved = json.loads(spill.read_text())
    assert saved["parent_run_id"] == "r0" and saved["experiment"] == "exp"
    writes = saved["writes"]
    assert [w["op"] for w in writes] == ["log_final"] * 3 and [w["args"][0] for w in writes] == ["t0", "t1", "t2"]
