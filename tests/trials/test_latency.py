"""Latency measured on both runtimes, and the per-layer latency model (trials/latency.py)."""

import json
import sys

import pytest
import torch
from torch import nn

from trials.errors import UserError
from trials.groups import build_graph
from trials.latency import (
    LatencySettings,
    LatencyTable,
    build_table,
    check_runtime,
    check_table,
    levels,
    measure,
    measure_side_by_side,
)
from trials.models import create_model
from trials.prune import rebuild
from trials.spec import ChannelSpec

FAST = LatencySettings(batch_size=4, threads=1, warmup=2, repeats=7)
SHAPE = (3, 32, 32)


def _conv(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))


def test_a_measurement_is_a_positive_median_with_its_spread_and_restores_threads():
    before = torch.get_num_threads()
    t = measure(_conv(8), SHAPE, FAST)
    assert t.median_ms > 0 and t.spread_ms >= 0 and t.repeats == 7
    assert torch.get_num_threads() == before


def test_side_by_side_a_wider_network_is_slower():
    small, wide = measure_side_by_side([_conv(4), _conv(96)], SHAPE, FAST)
    assert wide.median_ms > 3 * small.median_ms  # about 580x the MACs


def test_onnxruntime_times_the_exported_network():
    pytest.importorskip("onnxruntime", reason="the latency extra is not installed: pip install 'prunetune[latency]'")
    small, wide = measure_side_by_side([_conv(4), _conv(96)], SHAPE, LatencySettings(runtime="onnxruntime", **_fast()))
    assert 0 < small.median_ms < wide.median_ms


def _fast() -> dict:
    return {"batch_size": 4, "threads": 1, "warmup": 2, "repeats": 7}


def test_onnxruntime_without_the_extra_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"prunetune\[latency\]"):
        check_runtime(LatencySettings(runtime="onnxruntime"))


def test_an_unknown_runtime_or_a_missing_device_is_refused():
    with pytest.raises(UserError, match="latency.runtime 'tensorrt' is unknown"):
        check_runtime(LatencySettings(runtime="tensorrt"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            check_runtime(LatencySettings(device="cuda"))


def test_levels_are_distinct_ascending_and_end_at_the_width():
    assert levels(16, 6) == [3, 5, 8, 11, 13, 16]
    assert levels(2, 6) == [1, 2]


@pytest.fixture(scope="module")
def resnet20():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3).eval()
    graph = build_graph(model, SHAPE, "resnet20")
    build = lambda spec: rebuild("resnet20", spec, 10, 3, 32)  # noqa: E731
    return graph, build_table(graph, FAST, count=4, build=build, calibrate=4)


def test_the_table_predicts_the_whole_network_and_less_for_fewer_channels(resnet20):
    graph, table = resnet20
    full = {g.name: g.channels for g in graph.groups}
    half = ChannelSpec.from_ratios(graph.groups, 0.5).channels
    # by construction the rest closes the gap at full width
    assert table.predict(full) == pytest.approx(measure(graph.model, SHAPE, FAST).median_ms, rel=1.0)
    assert table.predict(half) < table.predict(full)
    assert {layer.shape for layer in table.layers} == set(table.tables)  # every layer has its table
    assert table.fit is not None and len(table.fit) == 3  # calibrated on 4 pruned networks and the whole one


def test_the_table_survives_json(resnet20):
    graph, table = resnet20
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    spec = ChannelSpec.from_ratios(graph.groups, 0.4).channels
    assert again.predict(spec) == pytest.approx(table.predict(spec))
    assert again.settings == table.settings


def test_predicted_latency_follows_measured_latency(resnet20):
    graph, table = resnet20
    check = check_table(table, graph, lambda s: rebuild("resnet20", s, 10, 3, 32), n=5, keep_min=0.25)
    # a loose bound: timings here share two cores with whatever else runs (docs/benchmarks.md
    # has the model's error measured on a quiet machine)
    assert check["median_rel_error"] < 0.5, check["pairs"]
    assert len(check["pairs"]) == 5
