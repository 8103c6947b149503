"""search.reevaluate's comparison with the uniform cut, on a real local MLflow store (the
fine-tunes are a function here, as Ray tasks run them in a search)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.front_table import rows_to_csv
from orchestrator.progress import format_rows
from orchestrator.reevaluate import UNIFORM, is_uniform, rounds, uniform_job
from orchestrator.tracking import SearchRecord
from tests.orchestrator.conftest import _result


def _final(acc: float, ratio: float, trial: str) -> dict:
    return {
        "val_accuracy": acc,
        "macs": int(ratio * 1e8),
        "macs_ratio": ratio,
        "params": 1000,
        "epoch": 2,
        "spec_json": json.dumps({"channels": {"g": 4}, "trial": trial}),
    }


def _done(acc: float, ratio: float = 0.3, spec: dict | None = None) -> dict:
    """What run_one returns for one re-evaluation."""
    spec = spec or {"channels": {"g": 5}, "uniform_at": ratio}
    return {"val_accuracy": acc, "macs": int(ratio * 1e8), "macs_ratio": ratio, "params": 900, "epoch": 2,
            "spec_json": json.dumps(spec)}  # fmt: skip


def test_which_configurations_are_the_uniform_cut():
    assert is_uniform({"stage1": "0.5", "stage2": "0.5", "macs_target": "0.3"})
    assert is_uniform({"stage1": "0.4", "stage2": "0.9", "spread": "0.0"})  # pulled all the way to the mean
    assert not is_uniform({"stage1": "0.4", "stage2": "0.9", "spread": "0.5"})
    assert not is_uniform({"layer1": "0.4", "layer2": "0.9"})
    row = {"macs_ratio": 0.3, "params_ratio": 0.4}
    assert uniform_job(row, {"a": "0.4", "b": "0.9"}, "macs") == {UNIFORM: 0.3, "objective": "macs"}
    assert uniform_job(row, {"a": "0.4", "b": "0.9"}, "params") == {UNIFORM: 0.4, "objective": "params"}
    assert uniform_job(row, {"a": "0.4", "b": "0.9"}, "latency") is None  # not timed in a re-evaluation
    assert uniform_job(row, {"a": "0.5", "b": "0.5"}, "macs") is None  # it is the uniform cut


def test_a_searched_configuration_is_compared_seed_for_seed_with_the_uniform_cut_at_its_macs(store):
    """'shaped' (0.96 in the search) is fine-tuned again over 2 data orders, and so is the
    uniform cut at its 0.3x MACs with the same orders; its run gets the paired difference,
    which the table and the csv show. 'flat' is the uniform cut itself: no comparison."""
    uri, record = store
    record.log_final("shaped", {"stage1": 0.4, "stage2": 0.9, "spread": 1.0}, _final(0.96, 0.3, "shaped"))
    record.log_final("flat", {"stage1": 0.5, "stage2": 0.5}, _final(0.90, 0.2, "flat"))
    for trial, run_id in record.children.items():
        MlflowClient(uri).log_text(run_id, _final(0, 0, trial)["spec_json"], "spec.json")
    jobs_seen = []

    def run_all(jobs):
        jobs_seen.extend(jobs)
        out = []
        for spec, _criterion, seed in jobs:
            base = 0.93 if UNIFORM in spec else {"shaped": 0.95, "flat": 0.90, "later": 0.97}[spec["trial"]]
            out.append(_done(base + 0.001 * (seed // 1000)))
        return out

    said = []
    assert rounds(record, 2, 2, 0, run_all, "l1", said.append, uniform="macs") == 2
    uniform_jobs = [(spec, seed) for spec, _c, seed in jobs_seen if UNIFORM in spec]
    assert uniform_jobs == [({UNIFORM: 0.3, "objective": "macs"}, 1000), ({UNIFORM: 0.3, "objective": "macs"}, 2000)]
    again = SearchRecord(uri, "exp", record.parent_run_id)
    again.baseline = record.baseline
    rows = {r["trial"]: r for r in again.rows()}
    assert rows["shaped"]["vs_uniform"] == pytest.approx(0.02) and rows["shaped"]["vs_uniform_std"] == pytest.approx(0)
    assert "vs_uniform" not in rows["flat"] and rows["flat"]["uniform"]
    assert any("+2.00 +- 0.00 points" in line for line in said)
    table = format_rows(again.rows())
    assert (
        "vs uniform" in table.splitlines()[0] and "+2.00±0.00" in table and "uniform" in table.splitlines()[-1] + table
    )
    header = rows_to_csv(again.rows()).splitlines()[0]
    assert "vs_uniform" in header and "val_accuracy_std" in header
    # without the comparison (reevaluate.uniform: false), nothing runs beside the configurations
    record.log_final("later", {"stage1": 0.3, "stage2": 0.8}, _final(0.97, 0.5, "later"))
    MlflowClient(uri).log_text(record.children["later"], _final(0, 0, "later")["spec_json"], "spec.json")
    jobs_seen.clear()
    assert rounds(record, 1, 2, 0, run_all, "l1", said.append) == 1
    assert all(UNIFORM not in spec for spec, _c, _s in jobs_seen) and len(jobs_seen) == 2


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
        return [_done(truth[by_run[_run_of(spec)]] + 0.001 * (seed % 7)) for spec, _c, seed in jobs]

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


def test_a_uniform_cut_that_beats_its_configuration_takes_its_place_on_the_front(store, tmp_path):
    """'shaped' (0.97 in the search, a lucky draw) averages 0.92 over 2 more data orders,
        and the uniform cut at its 0.3x MACs 0.94 over the same orders: the uniform cut becomes
        a trial run of its own (its counts in spec.json, its criterion, tagged with whose place
        it took), on the front; 'shaped' is kept off it although nothing else dominates it (the
    uniform cut landed at a little more MACs, as rounding to whole channels may put it).
        'fine' beats its uniform cut and stays."""
    from orchestrator.tracking import COMPARATOR_OF, CRITERION, ROLE

    uri, record = store
    record.log_final("shaped", {"stage1": 0.4, "stage2": 0.9}, _final(0.97, 0.3, "shaped"))
    record.log_final("fine", {"stage1": 0.9, "stage2": 0.6}, _final(0.96, 0.6, "fine"))
    client = MlflowClient(uri)
    for trial, run_id in record.children.items():
        client.log_text(run_id, _final(0, 0, trial)["spec_json"], "spec.json")
        client.set_tag(run_id, CRITERION, "taylor")
    scores = {"shaped": 0.92, "fine": 0.97}

    def run_all(jobs):
        return [
            _done(0.94 + 0.001 * (seed // 1000), spec[UNIFORM] + 0.01, {"channels": {"g": 3}})
            if UNIFORM in spec
            else _done(scores[spec["trial"]] + 0.002 * (seed // 1000))
            for spec, _c, seed in jobs
        ]

    said = []
    assert rounds(record, 2, 2, 0, run_all, "l1", said.append, uniform="macs") == 2
    again = SearchRecord(uri, "exp", record.parent_run_id)
    again.baseline = record.baseline
    rows = {r["trial"]: r for r in again.rows()}
    assert set(rows) >= {"shaped", "fine", "shaped-uniform"} and "fine-uniform" not in rows  # fine beat its own
    comp, shaped = rows["shaped-uniform"], rows["shaped"]
    assert comp["pareto"] and comp["uniform"] and comp["comparator"] and comp["reevaluations"] == 2
    assert comp["val_accuracy"] == pytest.approx(0.9415) and comp["macs_ratio"] == pytest.approx(0.31)
    assert shaped["beaten"] and not shaped["pareto"] and shaped["vs_uniform"] == pytest.approx(-0.0185)
    assert rows["fine"]["pareto"] and not rows["fine"].get("beaten")
    run = client.get_run(comp["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags[ROLE] == "trial"
    assert run.data.tags[COMPARATOR_OF] == shaped["run_id"] and run.data.tags[CRITERION] == "taylor"
    assert json.loads(Path(client.download_artifacts(comp["run_id"], "spec.json", str(tmp_path))).read_text()) == {
        "channels": {"g": 3}
    }
    assert any("takes trial shaped's place" in line for line in said)
    from orchestrator.front_table import summary

    assert "2 finished trials" in summary("1", again.rows(), again.baseline, "FINISHED")  # the comparator is none
    # the comparator is re-evaluated already: a later round does not pick it again
    assert rounds(record, 5, 2, 0, run_all, "l1", said.append, uniform="macs") == 0
