"""The per-layer latency model (trials/latency_table.py): predicted against measured."""

import json

import pytest
import torch

from trials.groups import build_graph
from trials.latency import LatencySettings, measure
from trials.latency_table import LatencyTable, build_table, check_table, levels
from trials.models import create_model
from trials.prune import rebuild
from trials.spec import ChannelSpec

FAST = LatencySettings(batch_size=4, threads=1, warmup=2, repeats=7)
SHAPE = (3, 32, 32)


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
