"""Reaching the store (orchestrator.store and the read-back of a stored search): paging, odd storage paths."""

from __future__ import annotations

from orchestrator import readback
from orchestrator.tracking import SearchRecord
from tests.orchestrator.conftest import _points, _result


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
