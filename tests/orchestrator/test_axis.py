"""The cost axis a front trades against accuracy (orchestrator.axis)."""

from __future__ import annotations

import pytest

from orchestrator.axis import AXES, BASELINE_ROW, axis, baseline_cost, baseline_row, has_latency

BASE = {"val_accuracy": 0.9, "macs": 2e8, "params": 4e6}


def test_a_search_without_an_objective_is_on_macs_and_each_objective_has_its_axis():
    assert axis(None) is AXES["macs"] and axis("bogus") is AXES["macs"]
    assert (axis("params").key, axis("latency").key) == ("params", "latency_ratio")


@pytest.mark.parametrize(
    "objective,row,relative,x",
    [
        ("macs", {"macs": 5e7}, 0.25, 50.0),
        ("params", {"params": 1e6}, 0.25, 1.0),
        ("latency", {"latency_ratio": 0.6, "latency_ms": 3.0}, 0.6, 0.6),  # already a ratio
    ],
)
def test_a_rows_cost_is_a_fraction_of_the_baselines_and_plots_in_its_unit(objective, row, relative, x):
    ax = axis(objective)
    assert ax.relative(row, BASE) == pytest.approx(relative)
    assert ax.x(row) == pytest.approx(x)


def test_the_baseline_row_is_one_on_every_ratio_and_carries_latency_only_when_measured():
    row = baseline_row(BASE)
    assert row["trial"] == BASELINE_ROW and row["baseline"] and row["run_id"] == ""
    assert row["macs_ratio"] == row["params_ratio"] == row["latency_ratio"] == 1.0
    assert "latency_ms" not in row and not has_latency([row])
    timed = baseline_row({**BASE, "latency_ms": 4.5})
    assert timed["latency_ms"] == 4.5 and has_latency([row, timed])
    assert baseline_cost(BASE, axis("latency")) == 1.0 and baseline_cost(BASE, axis("macs")) == 2e8
