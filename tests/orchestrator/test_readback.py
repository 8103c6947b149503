"""Reading a stored search back (orchestrator.readback)."""

from __future__ import annotations

from orchestrator import readback
from orchestrator.tracking import SearchRecord


def test_a_storage_path_with_a_quote_finds_its_search(tmp_path):

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage = str(tmp_path / 'it\'s "here"')
    record = SearchRecord.open(uri, "exp", storage, resume=False)
    assert readback.stored_search(uri, "exp", storage).info.run_id == record.parent_run_id
    assert SearchRecord.open(uri, "exp", storage, resume=True).parent_run_id == record.parent_run_id
