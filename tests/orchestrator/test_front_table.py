"""The front's rows (orchestrator.front_table) as tables, csv and the record read them: objectives, reevaluated means."""

from __future__ import annotations

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from orchestrator import front_table, readback
from orchestrator.pareto import hypervolume
from orchestrator.tracking import SearchRecord
from tests.orchestrator.conftest import _latency_search, _result


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
