"""The searcher (orchestrator/searcher.py) on real Optuna, driven as Tune drives it."""

from __future__ import annotations

import optuna
import pytest

from orchestrator.searcher import PrunetuneOptunaSearch
from orchestrator.space import REUSE


def _searcher(points: list[dict]) -> PrunetuneOptunaSearch:
    space = {n: optuna.distributions.FloatDistribution(0.25, 1.0, step=0.05) for n in ("stage0", "stage1")}
    return PrunetuneOptunaSearch(space=space, metric="val_accuracy", mode="max", points_to_evaluate=points)


def _final(acc: float) -> dict:
    return {"val_accuracy": acc, "macs": 5e6, "macs_ratio": 0.5, "spec_json": "{}", "trial_seconds": 3.0, "final": 1}


def test_a_configuration_proposed_again_gets_the_stored_result_instead_of_a_fine_tune():
    a, b = {"stage0": 0.5, "stage1": 0.7}, {"stage0": 0.6, "stage1": 0.7}
    searcher = _searcher([a, b, a])  # warm starts repeat; samplers do too
    first = searcher.suggest("t1")
    assert first == a and REUSE not in first
    searcher.on_trial_complete("t1", _final(0.91))
    second = searcher.suggest("t2")
    assert second == b and REUSE not in second
    searcher.on_trial_complete("t2", {"trial_failed": 1, "final": 1})  # a failure is never reused
    third = searcher.suggest("t3")
    stored = third[REUSE]
    assert {k: third[k] for k in a} == a and stored["reused_from"] == "t1"
    assert stored["val_accuracy"] == 0.91 and stored["trial_seconds"] == 0.0 and "final" not in stored
    searcher.on_trial_complete("t3", {**stored, "final": 1})  # the repeat's report: it stays t1's
    assert searcher._stored()[tuple(sorted(a.items()))]["reused_from"] == "t1"
    assert len(searcher._ot_study.trials) == 3  # Optuna still sees every trial, the repeat with t1's value


def test_the_methods_points_run_first_each_once_and_say_where_they_came_from():
    from orchestrator.baseline import Baseline
    from orchestrator.config import validate_config
    from orchestrator.searcher import new_searcher, starting_points
    from orchestrator.space import is_uniform, variables
    from trials.baseline import ModelInfo
    from trials.cost import count_cost
    from trials.groups import build_graph
    from trials.models import create_model

    search = {"granularity": "layer", "mode": "budget", "macs_target": 0.5, "keep_min": 0.3, "keep_step": 0.1}
    cfg = validate_config({"name": "t", "search": {**search, "warm_start_methods": ["adapruner", "adapruner"]}})
    model = create_model("resnet20", num_classes=10, in_channels=1)
    graph = build_graph(model, (1, 32, 32), "resnet20")
    var_map = variables(graph.groups, "layer")
    macs = count_cost(model, (1, 32, 32)).macs
    base = Baseline(model, {"macs": macs, "val_accuracy": 0.9}, ModelInfo("resnet20", 10, 1, 32))
    starts = starting_points(cfg, base, graph, var_map)
    assert [o for o, _ in starts] == ["adapruner", "uniform@0.5"]  # the repeated method's point runs once
    assert is_uniform(starts[1][1]) and set(starts[1][1].values()) == {0.5}
    searcher = new_searcher(cfg, var_map, starts)
    assert [searcher.suggest(f"t{i}") for i in range(2)] == [p for _, p in starts]


def test_a_sweep_starts_the_front_at_even_macs_targets_from_the_cheapest_to_0_9():
    from orchestrator.baseline import Baseline
    from orchestrator.config import validate_config
    from orchestrator.searcher import starting_points
    from orchestrator.space import TARGET, is_uniform, sweep_targets, variables
    from trials.baseline import ModelInfo
    from trials.cost import count_cost
    from trials.groups import build_graph
    from trials.models import create_model
    from trials.sensitivity import SensitivityMap

    model = create_model("resnet20", num_classes=10, in_channels=1)
    graph = build_graph(model, (1, 32, 32), "resnet20")
    var_map = variables(graph.groups, "layer")
    base = Baseline(model, {"macs": count_cost(model, (1, 32, 32)).macs}, ModelInfo("resnet20", 10, 1, 32))

    cfg = validate_config({"name": "t", "search": {"sweep": 4}})  # front mode on MACs, no method named
    assert cfg.search.warm_start == []  # the sweep replaces the uniform warm starts
    assert sweep_targets(cfg.search) == [0.06, 0.34, 0.62, 0.9]  # keep_min 0.25: 0.0625 of the MACs at least
    starts = starting_points(cfg, base, graph, var_map)
    assert [o.split("@")[0] for o, _ in starts] == ["uniform"] * 4 and all(is_uniform(p) for _, p in starts)
    reached = [p[TARGET] for _, p in starts]  # the uniform cut on the grid closest to each target
    assert all(abs(r - t) < 0.06 for r, t in zip(reached, sweep_targets(cfg.search))), reached

    # with the sensitivity map, its allocation at each target (not uniform: the map says where to cut)
    curves = {g.name: [0.2 if i % 2 else 0.8, 0.9, 0.95] for i, g in enumerate(graph.groups)}
    smap = SensitivityMap((0.25, 0.5, 1.0), curves, 0.95, {g.name: g.channels for g in graph.groups})
    cfg = validate_config({"name": "t", "search": {"sweep": 3, "warm_start_methods": ["sensitivity"]}})
    starts = starting_points(cfg, base, graph, var_map, smap)
    assert [o for o, _ in starts] == ["sensitivity@0.06", "sensitivity@0.48", "sensitivity@0.9"]
    assert not is_uniform(starts[1][1]) and starts[0][1][TARGET] < starts[1][1][TARGET] < starts[2][1][TARGET]
    for bad in ({"sweep": 3, "mode": "budget", "macs_target": 0.5}, {"sweep": 3, "front_targets": False}):
        with pytest.raises(Exception, match="sweep: spreads the first trials"):
            validate_config({"name": "t", "search": bad})
    front = validate_config({"name": "t"}).search  # front mode on MACs, unset: a sweep of 3 and fill
    assert (front.sweep, front.warm_start, front.fill) == (3, [], 1.0)
    chosen = validate_config({"name": "t", "search": {"warm_start": [0.5, 1.0]}}).search  # the user's starts
    assert (chosen.sweep, chosen.warm_start) == (0, [0.5, 1.0])
    budget = validate_config({"name": "t", "search": {"mode": "budget", "macs_target": 0.5}}).search
    assert (budget.sweep, budget.fill, budget.warm_start) == (0, 0.0, [0.5, 0.75, 1.0])


def test_behind_ray_tunes_searcher_a_fill_trial_lands_in_the_widest_gap_and_survives_a_snapshot(tmp_path):
    from orchestrator.config import validate_config
    from orchestrator.searcher import new_searcher
    from orchestrator.space import FILL, SPREAD, TARGET

    var_map = {"a": ["a"], "b": ["b"]}
    cfg = validate_config({"name": "t", "search": {"fill": 1.0, "max_concurrent": 1}})
    starts = [(f"uniform@{t}", {"a": 0.5, "b": 0.5, SPREAD: 0.0, TARGET: t}) for t in (0.06, 0.3, 0.9)]
    searcher = new_searcher(cfg, var_map, starts)
    for i, (acc, macs) in enumerate([(0.5, 0.06), (0.85, 0.3), (0.9, 0.9)]):
        start = searcher.suggest(f"t{i}")
        assert start[TARGET] == (0.06, 0.3, 0.9)[i] and FILL not in start  # starting points fill no gap
        # the front's cost is the count (a 40 M-MACs baseline), not the fraction the targets are
        searcher.on_trial_complete(f"t{i}", {"val_accuracy": acc, "macs": macs * 4e7 * 1.01, "final": True})
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))  # what Tune snapshots with the run
    restored = new_searcher(cfg, var_map, [])
    restored.restore(str(path))
    for s in (searcher, restored):
        filled = s.suggest("t3")
        assert filled[TARGET] == 0.18 and filled[SPREAD] == 0.0 and filled["a"] == 0.5, filled  # 0.06 to 0.3
        assert filled[FILL] == "t0", filled  # the shape of the gap's cheaper end, by Ray's trial id
    with pytest.raises(Exception, match="fill: places trials between front points"):
        validate_config({"name": "t", "search": {"fill": 0.5, "mode": "budget", "macs_target": 0.5}})


@pytest.mark.parametrize("name", ["nsga2", "tpe", "random"])
def test_every_sampler_survives_the_snapshots_ray_tune_takes(tmp_path, name):
    """Tune pickles the searcher when a run starts (the Tuner's own state) and at every
    snapshot; Optuna 5.1's NSGA-II held a thread lock that failed both, so every nsga2
    search (budget mode's default sampler) died before its first trial."""
    from ray import cloudpickle

    from orchestrator.config import validate_config
    from orchestrator.searcher import new_searcher

    var_map = {"a": ["a"], "b": ["b"]}
    cfg = validate_config({"name": "t", "search": {"mode": "budget", "macs_target": 0.5, "sampler": name}})
    searcher = new_searcher(cfg, var_map, [("uniform@0.5", {"a": 0.5, "b": 0.5})])
    for i in range(3):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"val_accuracy": 0.5 + i / 10, "macs": 1.0, "final": True})
    cloudpickle.loads(cloudpickle.dumps(searcher))  # the Tuner's state at its start
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    restored = new_searcher(cfg, var_map, [])
    restored.restore(str(path))
    assert restored.suggest("t3") is not None  # the restored sampler samples (a new lock where it had one)
