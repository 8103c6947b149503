"""The per-layer widths a front page shows (orchestrator.widths), logged to and read back
from a real local MLflow store."""

from __future__ import annotations

import json

from orchestrator.widths import front_widths, log_groups, read_groups
from tests.orchestrator.conftest import _result
from trials.groups import build_graph
from trials.models import create_model


def test_the_groups_and_each_front_points_kept_counts_come_back_from_the_record(store):
    uri, record = store
    graph = build_graph(create_model("resnet20", in_channels=1), (1, 8, 8))
    assert read_groups(record.client, record.parent_run_id) is None  # an older search: no groups
    assert front_widths(record.client, record.parent_run_id, []) is None
    log_groups(record.client, record.parent_run_id, graph)
    groups = json.loads(read_groups(record.client, record.parent_run_id))
    assert list(groups) == [g.name for g in graph.groups] and groups["conv1"] == 16

    for tid, (acc, macs, kept) in {
        "small": (0.9, 10**7, 4),
        "big": (0.95, 5 * 10**7, 12),
        "poor": (0.5, 6 * 10**7, 14),
    }.items():
        result = {**_result(acc, macs), "spec_json": json.dumps({"channels": {"conv1": kept}})}
        record.log_final(tid, {"stage0": 0.5}, result)
    rows = record.rows()
    widths = front_widths(record.client, record.parent_run_id, rows)
    assert widths["baseline"] == groups
    assert widths["points"] == {"small": {"conv1": 4}, "big": {"conv1": 12}}  # the front only, no baseline
    given = {record.children["small"]: json.dumps({"channels": {"conv1": 5}})}  # specs at hand are not re-read
    assert front_widths(record.client, record.parent_run_id, rows, specs=given)["points"]["small"] == {"conv1": 5}
