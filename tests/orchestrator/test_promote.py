"""Choosing what to promote (orchestrator.promote) from a real local MLflow store: ids as the tables print them, MACs and latency limits."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.orchestrator.conftest import _latency_search, _result
from trials.errors import UserError


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


def test_promote_picks_the_best_front_point_under_a_measured_latency_ratio(tmp_path):
    from orchestrator.promote import resolve_trial_run

    uri, record = _latency_search(tmp_path)
    client = MlflowClient(uri)
    assert resolve_trial_run(client, "exp", None, 0.6).info.run_id == record.children["fast"]
    assert resolve_trial_run(client, "exp", None, 0.4).info.run_id == record.children["fastest"]
    assert resolve_trial_run(client, "exp", 0.55, 0.6).info.run_id == record.children["fastest"]  # both limits hold
    with pytest.raises(UserError, match="no front point with latency_ratio <= 0.2"):
        resolve_trial_run(client, "exp", None, 0.2)
