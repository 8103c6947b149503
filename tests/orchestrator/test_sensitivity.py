"""The orchestrator's sensitivity map: computed once per baseline and setting, then read
from the cache beside the baseline."""

from __future__ import annotations

import torch

from orchestrator.baseline import Baseline
from orchestrator.config import validate_config
from orchestrator.sensitivity import sensitivity_map
from trials.baseline import ModelInfo
from trials.groups import build_graph
from trials.models import create_model


def _setup(tmp_path, seed: int = 0):
    cfg = validate_config(
        {
            "name": "sens",
            "storage": str(tmp_path),
            "data": {"name": "digits", "image_size": 8},
            "search": {"keep_min": 0.25},
            "trial": {"adaptive_bn_batches": 1},
            "sensitivity": {"levels": 2, "val_batches": 1},
        }
    )
    torch.manual_seed(seed)
    model = create_model("resnet20", num_classes=10, in_channels=1)
    base = Baseline(model, {"val_accuracy": 0.5, "macs": 1.0}, ModelInfo("resnet20", 10, 1, 8))
    return cfg, base, build_graph(model, (1, 8, 8), "resnet20")


def test_the_map_is_computed_once_then_read_from_the_cache(tmp_path):
    cfg, base, graph = _setup(tmp_path)
    said: list[str] = []
    first = sensitivity_map(cfg, base, graph, said.append)
    assert first.levels == (0.25, 0.625, 1.0)
    assert set(first.scores) == {g.name for g in graph.groups}
    assert all(all(a <= b for a, b in zip(v, v[1:])) for v in first.scores.values())
    cached = list(tmp_path.glob("sens/sensitivity-*.json"))
    assert len(cached) == 1 and not any("loaded" in s for s in said)
    said.clear()
    again = sensitivity_map(cfg, base, graph, said.append)
    assert again.raw == first.raw and any("loaded" in s for s in said)
    _, other, graph2 = _setup(tmp_path, seed=1)  # other weights: another map
    sensitivity_map(cfg, other, graph2, said.append)
    assert len(list(tmp_path.glob("sens/sensitivity-*.json"))) == 2
