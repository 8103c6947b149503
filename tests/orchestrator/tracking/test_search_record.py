"""A search's MLflow record (orchestrator/tracking/search_record.py), on a real local MLflow store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.pareto import hypervolume, pareto_front
from orchestrator.tracking import PARETO, SearchRecord
from tests.orchestrator.conftest import Counted, _children, _points, _result


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


def test_a_stopped_search_leaves_no_run_running(store):
    uri, record = store
    record.log_epoch("t0", {"stage0": 0.5}, _result(0.5, 10**7, epoch=1))  # cut short mid-trial
    record.log_final("t1", {"stage0": 0.6}, _result(0.8, 2 * 10**7))
    assert record.kill_open_trials() == 1
    record.finish("KILLED")
    runs = MlflowClient(uri).search_runs([record.experiment_id])
    assert {r.info.status for r in runs} == {"KILLED", "FINISHED"}
    assert MlflowClient(uri).get_run(record.parent_run_id).info.status == "KILLED"
