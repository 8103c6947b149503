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
    cached = list(tmp_path.glob("sensitivity/*.json"))  # under the storage root, for any search of it
    assert len(cached) == 1 and not any("loaded" in s for s in said)
    said.clear()
    again = sensitivity_map(cfg, base, graph, said.append)
    assert again.raw == first.raw and any("loaded" in s for s in said)
    _, other, graph2 = _setup(tmp_path, seed=1)  # other weights: another map
    sensitivity_map(cfg, other, graph2, said.append)
    assert len(list(tmp_path.glob("sensitivity/*.json"))) == 2


def test_a_front_search_starts_from_the_map_only_where_it_is_cached(tmp_path):
    """``search_map``: no map is computed for the default front search; once a map of the
    same weights and setting is cached (an earlier search or `prunetune prune`, under any
    name), the search starts its sweep from its allocation."""
    from orchestrator.searcher import starting_points
    from orchestrator.sensitivity import search_map
    from orchestrator.space import variables

    cfg, base, graph = _setup(tmp_path)
    assert cfg.search.cached_sensitivity and cfg.search.warm_start_methods == []
    said: list[str] = []
    same, smap = search_map(cfg, base, graph, said.append)
    assert smap is None and same is cfg and not list(tmp_path.glob("sensitivity/*.json")) and not said

    sensitivity_map(cfg.model_copy(update={"name": "another"}), base, graph, said.append)  # another search's map
    run, smap = search_map(cfg, base, graph, said.append)
    assert smap is not None and run.search.warm_start_methods == ["sensitivity"]
    assert any("cached" in s for s in said)
    var_map = variables(graph.groups, "layer")
    origins = [o for o, _ in starting_points(run, base, graph, var_map, smap)]
    assert origins and all(o.startswith("sensitivity@") for o in origins), origins
    uniform = [o for o, _ in starting_points(cfg, base, graph, var_map, None)]
    assert all(o.startswith("uniform") for o in uniform), uniform

    off = cfg.model_copy(update={"search": cfg.search.model_copy(update={"cached_sensitivity": False})})
    assert search_map(off, base, graph, said.append) == (off, None)
