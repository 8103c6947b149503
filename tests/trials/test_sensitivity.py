"""Sensitivity analysis: per-group curves after adaptive BN, made monotone; one global
threshold bisected onto a MACs target."""

from __future__ import annotations

import random

import pytest
import torch

from trials.baseline import ModelInfo, train_baseline
from trials.cost import count_cost
from trials.data import DataConfig
from trials.errors import UserError
from trials.groups import build_graph
from trials.models import create_model
from trials.prune import rebuild
from trials.sensitivity import SensitivityMap, allocate, base_score, group_curve, keep_levels, monotone
from trials.train import FinetuneConfig

DIGITS = DataConfig(name="digits", batch_size=64, image_size=8)
INFO = ModelInfo("resnet20", 10, 1, 8)


def test_monotone_never_scores_a_deeper_cut_above_a_lighter_one():
    rng = random.Random(0)
    for _ in range(200):
        raw = [rng.random() for _ in range(rng.randint(2, 9))]
        base = rng.random()
        out = monotone(raw, base)
        assert out[-1] == base
        assert all(a <= b for a, b in zip(out, out[1:]))
        assert all(o <= r for o, r in zip(out[:-1], raw[:-1]))


def test_keep_levels_span_keep_min_below_one():
    assert keep_levels(0.25, 3) == (0.25, 0.5, 0.75)
    with pytest.raises(UserError, match="levels"):
        keep_levels(0.2, 0)


def _synthetic_map(graph, rng: random.Random) -> SensitivityMap:
    levels = (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
    raw = {}
    for g in graph.groups:
        k = rng.uniform(0.02, 0.6)  # how much accuracy the group loses when cut to nothing
        raw[g.name] = [0.9 - k * (1 - x) ** 2 + rng.uniform(-0.01, 0.01) for x in levels]
    return SensitivityMap(levels, raw, 0.9, {g.name: g.channels for g in graph.groups})


@pytest.mark.parametrize("arch", ["resnet56", "mobilenet_v2"])
@pytest.mark.parametrize("target", [0.6, 0.3])
def test_threshold_bisection_lands_within_one_percent_of_the_target(arch, target):
    graph = build_graph(create_model(arch), (3, 32, 32), arch)
    base = count_cost(graph.model, (3, 32, 32)).macs
    smap = _synthetic_map(graph, random.Random(3))
    spec, macs, threshold = allocate(graph, smap, target * base, keep_min=0.1, arch=arch)
    real = count_cost(rebuild(arch, spec), (3, 32, 32)).macs
    assert real == macs and abs(real / base - target) <= 0.01 * target
    assert threshold > 0


def test_the_sensitive_group_keeps_more_than_the_insensitive_one():
    graph = build_graph(create_model("resnet20"), (3, 32, 32), "resnet20")
    levels = (0.2, 0.6, 1.0)
    flat = [0.89, 0.9, 0.9]  # cutting costs almost nothing
    steep = [0.3, 0.7, 0.9]
    names = [g.name for g in graph.groups]
    raw = {n: (steep if i % 2 else flat) for i, n in enumerate(names)}
    smap = SensitivityMap(levels, raw, 0.9, {g.name: g.channels for g in graph.groups})
    base = count_cost(graph.model, (3, 32, 32)).macs
    spec, _, _ = allocate(graph, smap, 0.6 * base, keep_min=0.1, arch="resnet20")
    kept = spec.ratios(graph.groups)
    assert min(kept[n] for i, n in enumerate(names) if i % 2) > max(kept[n] for i, n in enumerate(names) if not i % 2)


def test_a_map_of_another_network_is_refused():
    graph = build_graph(create_model("resnet20"), (3, 32, 32), "resnet20")
    smap = SensitivityMap((0.5, 1.0), {"nope": [0.5, 0.9]}, 0.9, {"nope": 16})
    with pytest.raises(UserError, match="no curve for group"):
        allocate(graph, smap, 1e6)


def test_map_round_trips_through_its_document():
    smap = SensitivityMap((0.5, 1.0), {"a": [0.95, 0.9]}, 0.9, {"a": 16})
    back = SensitivityMap.from_dict(smap.to_dict())
    assert back.scores == {"a": [0.9, 0.9]} and back.raw == smap.raw and back.levels == smap.levels
    with pytest.raises(UserError, match="sensitivity map"):
        SensitivityMap.from_dict({"levels": []})


def test_curves_of_a_trained_network_fall_as_a_group_is_cut():
    torch.manual_seed(0)
    model, _ = train_baseline(INFO, DIGITS, FinetuneConfig(epochs=4, lr=0.1), "cpu", log=None)
    state = model.state_dict()
    graph = build_graph(model, (1, 8, 8), "resnet20")
    top = base_score("resnet20", INFO, state, DIGITS)
    assert top > 0.8
    first = graph.groups[0]  # the stem's residual group: every block of stage 0 reads it
    curve = group_curve("resnet20", INFO, state, first.name, first.channels, (0.1, 0.5, 0.9), DIGITS)
    smap = SensitivityMap((0.1, 0.5, 0.9, 1.0), {first.name: curve + [top]}, top, {first.name: first.channels})
    scores = smap.scores[first.name]
    assert all(0.0 <= s <= 1.0 for s in curve)
    assert scores[0] < top - 0.05  # keeping a tenth of the stem's channels costs accuracy
    assert all(a <= b for a, b in zip(scores, scores[1:]))
