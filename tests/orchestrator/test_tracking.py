"""The MLflow record of a search and the driver's callback, on a real local MLflow store."""

from __future__ import annotations

import gc
import json
import random
import socket
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from orchestrator import front_table, readback
from orchestrator.pareto import hypervolume, pareto_front
from orchestrator.progress import TrackingCallback
from orchestrator.tracking import PARETO, SearchRecord
from trials.errors import UserError


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


def test_a_trial_costs_the_same_few_calls_early_and_late_and_the_tags_mark_the_front(store):
    uri, record = store
    record.client = Counted(record.client)
    points = _points(40)
    per_trial = []
    for i, (acc, macs) in enumerate(points):
        before = record.client.calls.copy()
        params = {"stage0": 0.5, "stage1": 0.75}
        record.log_epoch(f"t{i}", params, _result(acc, macs, epoch=1))
        record.log_final(f"t{i}", params, _result(acc, macs))
        per_trial.append(record.client.calls - before)
    # create_run, 2 batches, spec.json, end of run: the same five calls for the first
    # trial and the 40th; a tag only for a run pushed off the front (once per run at most);
    # the front artifacts at most once per 10 s (the page's groups read once per record):
    # nothing per trial grows with the search.
    periodic = ("set_tag", "log_artifacts", "log_metric", "download_artifacts")
    assert all(sum(c.values()) - sum(c[k] for k in periodic) == 5 for c in per_trial), per_trial
    assert record.client.calls["set_tag"] < len(points)
    assert record.client.calls["log_artifacts"] <= 3
    assert record.client.calls["download_artifacts"] <= 1
    runs = _children(uri, record)
    front = {f"t{i}" for i in pareto_front(points)}
    assert {t for t, r in runs.items() if r.data.tags[PARETO] == "true"} == front
    assert all(r.data.params == {"stage0": "0.5", "stage1": "0.75"} for r in runs.values())
    assert all(r.info.status == "FINISHED" and r.data.metrics["val_accuracy"] > 0 for r in runs.values())

    # a reopened record (resume, or the end of the search) knows the tags: finishing
    # writes none again
    again = SearchRecord(uri, "exp", record.parent_run_id)
    again.client = Counted(again.client)
    again.baseline = record.baseline
    again.finish()
    assert again.client.calls["set_tag"] == 1  # the search run's description only, no pareto tag again
    assert {r["trial"] for r in again.rows() if r["pareto"]} == front | {"baseline"}  # the unpruned point too
    note = MlflowClient(uri).get_run(record.parent_run_id).data.tags["mlflow.note.content"]
    assert all(f"[{t}](#/experiments/" in note for t in front) and "tags.prunetune.pareto = 'true'" in note
    assert MlflowClient(uri).get_experiment(record.experiment_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )
    hv = MlflowClient(uri).get_run(record.parent_run_id).data.metrics["front_hypervolume"]
    assert hv == pytest.approx(hypervolume([(a, m / 1e8) for a, m in points], (0.0, 1.0)))
    assert 0 < hv < 1


def test_params_past_mlflow_batch_limits_are_all_written(store):
    uri, record = store
    params = {f"layer{i}": 0.5 for i in range(130)}
    record.log_final("big", params, _result(0.9, 50_000_000))
    assert len(_children(uri, record)["big"].data.params) == 130


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
        assert frozen[1] == 0 and frozen[2] > 0 and frozen[5] >= frozen[2]  # after trials 3 and 6
        cb.on_experiment_end([])
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


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


def test_every_page_of_runs_is_read_past_the_page_size(store, monkeypatch):
    import orchestrator.store

    uri, record = store
    for i, (acc, macs) in enumerate(_points(7, seed=3)):
        record.log_final(f"t{i}", {"stage0": 0.5}, _result(acc, macs))
    record.finish()
    monkeypatch.setattr(orchestrator.store, "PAGE_SIZE", 2)  # 7 trials: four pages
    again = SearchRecord(uri, "exp", record.parent_run_id)
    assert sorted(again.finished) == [f"t{i}" for i in range(7)]
    rows, baseline = readback.read_front(uri, "exp")
    assert len(rows) == 8 and baseline["macs"] == 1e8  # 7 trials and the baseline
    assert readback.stored_search(
        uri, "exp", record.client.get_run(record.parent_run_id).data.tags["prunetune.storage"]
    )


def test_a_storage_path_with_a_quote_finds_its_search(tmp_path):

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage = str(tmp_path / 'it\'s "here"')
    record = SearchRecord.open(uri, "exp", storage, resume=False)
    assert readback.stored_search(uri, "exp", storage).info.run_id == record.parent_run_id
    assert SearchRecord.open(uri, "exp", storage, resume=True).parent_run_id == record.parent_run_id


def test_a_stopped_search_leaves_no_run_running(store):
    uri, record = store
    record.log_epoch("t0", {"stage0": 0.5}, _result(0.5, 10**7, epoch=1))  # cut short mid-trial
    record.log_final("t1", {"stage0": 0.6}, _result(0.8, 2 * 10**7))
    assert record.kill_open_trials() == 1
    record.finish("KILLED")
    runs = MlflowClient(uri).search_runs([record.experiment_id])
    assert {r.info.status for r in runs} == {"KILLED", "FINISHED"}
    assert MlflowClient(uri).get_run(record.parent_run_id).info.status == "KILLED"


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


def test_promote_takes_the_ids_the_tables_print(store):
    from orchestrator.progress import format_rows
    from orchestrator.promote import resolve_trial_run

    uri, record = store
    for i, (acc, macs) in enumerate([(0.9, 2 * 10**7), (0.95, 5 * 10**7)]):
        record.log_final(f"abc_0000{i}", {"stage0": 0.5}, _result(acc, macs))
    run_id = record.children["abc_00001"]
    table = format_rows(record.rows())
    assert run_id[:8] in table and "abc_00001" in table  # both columns are ids promote takes
    client = MlflowClient(uri)
    for given in (run_id, run_id[:8], "abc_00001"):
        assert resolve_trial_run(client, given, None).info.run_id == run_id, given
    with pytest.raises(UserError, match="'exp' is an experiment: .*--max-macs-ratio"):
        resolve_trial_run(client, "exp", None)
    with pytest.raises(UserError, match="not found"):
        resolve_trial_run(client, "nosuchtrial_00009", None)
    assert resolve_trial_run(client, "exp", 0.3).info.run_id == record.children["abc_00000"]


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


def test_a_latency_search_ranks_its_front_on_measured_latency_and_shows_it_beside_macs(tmp_path):
    """With objective latency the front trades accuracy against the measured latency ratio:
    a trial with fewer MACs but no faster is dominated; tables, csv, summary, plots and
    ``pareto`` (read back from MLflow alone) show ms and ratio beside MACs."""
    import orchestrator.tracking as tracking
    from orchestrator.plots import write_png
    from orchestrator.progress import format_rows

    uri, record = _latency_search(tmp_path)
    on_front = {r["trial"] for r in record.rows() if r["pareto"]}
    assert on_front == {"fast", "fastest", "baseline"}  # on MACs, few_macs would dominate fast

    rows, baseline, objective = readback.read_search(uri, "exp")
    assert objective == "latency" and baseline["latency_ms"] == 4.0
    assert {r["trial"] for r in rows if r["pareto"]} == on_front
    assert [r["latency_ratio"] for r in rows if r["pareto"]] == [0.3, 0.5, 1.0]
    table = format_rows(rows)
    assert "lat (ms)" in table.splitlines()[0] and "2.000" in table and "1.200" in table
    assert front_table.rows_to_csv(rows).splitlines()[0].endswith("latency_ms,latency_ratio")
    note = MlflowClient(uri).get_run(record.parent_run_id).data.tags[tracking.NOTE]
    assert "against latency" in note and "latency (ms)" in note and "4.000 ms" in note
    assert MlflowClient(uri).get_run(record.parent_run_id).data.metrics["front_hypervolume"] == pytest.approx(
        hypervolume([(0.9, 0.3), (0.95, 0.5), (0.99, 1.0)], (0.0, 1.0))
    )
    write_png(rows, tmp_path / "front.png", "t", baseline, objective)
    assert (tmp_path / "front.png").stat().st_size > 1000
    macs_rows = front_table.front_rows([r for r in rows if not r.get("baseline")], baseline, "macs")
    assert {r["trial"] for r in macs_rows if r["pareto"]} == {"few_macs", "baseline"}  # it dominates both on MACs


def test_the_progress_line_of_a_latency_search_tells_measured_latency(tmp_path):
    base = {"val_accuracy": 0.9, "macs": 1e8, "latency_ms": 4.0}
    cb = TrackingCallback(None, "exp", "r0", 3, base, tmp_path / "s", objective="latency")
    lines = []
    cb.say, cb._write = lines.append, lambda op, *args: None
    cb.on_trial_result(0, [], SimpleNamespace(trial_id="a", config={}), {**_timed(0.85, 3 * 10**7, 0.45), "final": 1})
    cb.on_trial_result(0, [], SimpleNamespace(trial_id="b", config={}), {**_timed(0.88, 2 * 10**7, 0.7), "final": 1})
    assert "1.800 ms (0.450x latency)" in lines[0] and "best at <=0.5x latency 0.8500" in lines[-1]
    assert set(cb.front.members) == {"a", "b"}  # b: fewer MACs, slower, more accurate: both on the front


def test_promote_picks_the_best_front_point_under_a_measured_latency_ratio(tmp_path):
    from orchestrator.promote import resolve_trial_run

    uri, record = _latency_search(tmp_path)
    client = MlflowClient(uri)
    assert resolve_trial_run(client, "exp", None, 0.6).info.run_id == record.children["fast"]
    assert resolve_trial_run(client, "exp", None, 0.4).info.run_id == record.children["fastest"]
    assert resolve_trial_run(client, "exp", 0.55, 0.6).info.run_id == record.children["fastest"]  # both limits hold
    with pytest.raises(UserError, match="no front point with latency_ratio <= 0.2"):
        resolve_trial_run(client, "exp", None, 0.2)


def test_a_reevaluated_configuration_is_ranked_on_its_mean_and_shown_with_its_spread(store):
    """search.reevaluate: a lucky single fine-tune (0.97) re-evaluated at 0.90 +- 0.01 falls
    behind a configuration that costs as much and held 0.95."""
    from orchestrator.progress import format_rows
    from orchestrator.reevaluate import picks

    uri, record = store
    record.log_final("lucky", {"stage0": 0.5}, _result(0.97, 4 * 10**7))
    record.log_final("steady", {"stage0": 0.6}, _result(0.95, 4 * 10**7))
    record.log_final("small", {"stage0": 0.3}, _result(0.80, 10**7))
    assert [r["trial"] for r in picks(record.rows(), 2)] == ["lucky", "small"]  # the front, most accurate first
    MlflowClient(uri).log_batch(
        record.children["lucky"],
        metrics=[
            Metric("val_accuracy_mean", 0.90, 0, 0),
            Metric("val_accuracy_std", 0.01, 0, 0),
            Metric("reevaluations", 3.0, 0, 0),
        ],
    )
    again = SearchRecord(uri, "exp", record.parent_run_id)
    again.baseline = record.baseline
    rows = {r["trial"]: r for r in again.rows()}
    assert rows["lucky"]["val_accuracy"] == 0.90 and rows["lucky"]["val_accuracy_search"] == 0.97
    assert rows["steady"]["pareto"] and not rows["lucky"]["pareto"]
    assert "lucky" not in [r["trial"] for r in picks(again.rows(), 3)]  # never re-evaluated twice
    table = format_rows(again.rows())
    assert "sd" in table.splitlines()[0] and "0.0100" in table


def test_reevaluation_goes_on_with_what_comes_onto_the_front_until_its_budget_is_spent(store):
    """Round 1 re-evaluates the front (lucky, small); lucky falls to 0.90 and steady comes
    onto the front in its place, so round 2 re-evaluates steady: the front a user reads is
    of means. Then the rest, most accurate first, while the budget (top) lasts; each
    configuration is re-evaluated once."""
    from orchestrator.reevaluate import rounds

    uri, record = store
    record.log_final("lucky", {"stage0": 0.5}, _result(0.97, 4 * 10**7))
    record.log_final("steady", {"stage0": 0.6}, _result(0.95, 4 * 10**7))
    record.log_final("small", {"stage0": 0.3}, _result(0.80, 10**7))
    record.log_final("poor", {"stage0": 0.4}, _result(0.70, 3 * 10**7))
    truth = {"lucky": 0.90, "steady": 0.94, "small": 0.80}
    by_run = {v: k for k, v in record.children.items()}
    calls, said = [], []

    def run_all(jobs):
        calls.append(len(jobs))
        return [truth[by_run[_run_of(spec)]] + 0.001 * (seed % 7) for spec, _c, seed in jobs]

    specs = {}

    def _run_of(spec):
        return specs[json.dumps(spec, sort_keys=True)]

    for trial, run_id in record.children.items():  # each trial's spec names it, so run_all knows whose it is
        spec = {"channels": {"g": 4}, "trial": trial}
        MlflowClient(uri).log_text(run_id, json.dumps(spec), "spec.json")
        specs[json.dumps(spec, sort_keys=True)] = run_id
    truth["poor"] = 0.70
    assert rounds(record, 3, 2, 0, run_all, "l1", said.append) == 3
    assert calls == [4, 2]  # round 1: lucky and small, 2 seeds each; round 2: steady; no budget for poor
    assert said[0].startswith("reevaluate: the top 2") and said[3].startswith("reevaluate: 1 more")
    again = SearchRecord(uri, "exp", record.parent_run_id)
    again.baseline = record.baseline
    rows = {r["trial"]: r for r in again.rows()}
    assert rows["steady"]["pareto"] and not rows["lucky"]["pareto"] and "reevaluations" not in rows["poor"]
    assert rows["steady"]["val_accuracy"] == pytest.approx(0.94 + 0.001 * ((1000 % 7) + (2000 % 7)) / 2)
    assert rounds(record, 5, 2, 0, run_all, "l1", said.append) == 1 and calls[-1] == 2  # poor, the one left
    assert rounds(record, 5, 2, 0, run_all, "l1", said.append) == 0  # each once
