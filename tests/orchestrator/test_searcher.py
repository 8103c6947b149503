"""The searcher (orchestrator/searcher.py) on real Optuna, driven as Tune drives it."""

from __future__ import annotations

import optuna

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
