from __future__ import annotations

import optuna
import pytest

from orchestrator.space import distributions, grid, group_ratios, suggest_ratios, variables, warm_start_points
from trials.groups import build_graph
from trials.models import create_model


@pytest.fixture(scope="module")
def groups():
    return build_graph(create_model("resnet20"), (3, 32, 32)).groups


def test_one_variable_per_group_or_per_stage(groups):
    per_layer = variables(groups, "layer")
    assert list(per_layer) == [g.name for g in groups] and all("/" not in n for n in per_layer)
    per_stage = variables(groups, "stage")
    assert list(per_stage) == ["stage0", "stage1", "stage2"]
    assert sum(len(v) for v in per_stage.values()) == len(groups)


def test_define_by_run_space_with_fixed_trial(groups):
    names = list(variables(groups, "layer"))
    params = {n: 0.5 for n in names} | {names[0]: 0.95}
    ratios = suggest_ratios(optuna.trial.FixedTrial(params), names, 0.3, 1.0, 0.05)
    assert ratios == params
    assert set(group_ratios(ratios, variables(groups, "layer"))) == {g.name for g in groups}
    with pytest.warns(UserWarning, match="out of the range"):  # Optuna flags a value off the space
        suggest_ratios(optuna.trial.FixedTrial({n: 1.5 for n in names}), names, 0.3, 1.0, 0.05)


def test_distributions_match_the_define_by_run_space(groups):
    names = list(variables(groups, "stage"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    suggest_ratios(trial, names, 0.25, 1.0, 0.1)
    assert trial.distributions == distributions(names, 0.25, 1.0, 0.1)


def test_warm_start_is_uniform_snapped_and_deduplicated():
    points = warm_start_points(["a", "b"], [0.5, 0.52, 0.7, 1.0], 0.3, 1.0, 0.1)
    assert points == [{"a": 0.5, "b": 0.5}, {"a": 0.7, "b": 0.7}, {"a": 1.0, "b": 1.0}]
    assert grid(0.25, 1.0, 0.25) == [0.25, 0.5, 0.75, 1.0]


def test_warm_start_points_are_evaluated_first_by_optuna():
    names = ["a", "b"]
    study = optuna.create_study(directions=["maximize", "minimize"])
    for p in warm_start_points(names, [0.5, 1.0], 0.3, 1.0, 0.1):
        study.enqueue_trial(p)
    first = study.ask(fixed_distributions=distributions(names, 0.3, 1.0, 0.1))
    assert first.params == {"a": 0.5, "b": 0.5}


def test_budget_mode_spends_one_trial_on_the_uniform_warm_start():
    from types import SimpleNamespace

    from orchestrator.space import warm_levels

    assert warm_levels(SimpleNamespace(mode="budget", warm_start=[0.5, 0.75, 1.0])) == [0.5]
    assert warm_levels(SimpleNamespace(mode="front", warm_start=[0.5, 0.75, 1.0])) == [0.5, 0.75, 1.0]
    assert warm_levels(SimpleNamespace(mode="budget", warm_start=[])) == []


def test_front_targets_add_a_macs_target_variable_and_give_warm_starts_their_own_macs():
    import pytest

    from orchestrator.config import validate_config
    from orchestrator.space import TARGET, search_space, with_targets
    from trials.cost import count_cost
    from trials.groups import build_graph
    from trials.models import create_model
    from trials.prune import apply_spec
    from trials.spec import ChannelSpec

    cfg = validate_config({"name": "t", "search": {"front_targets": True, "keep_min": 0.3, "granularity": "stage"}})
    model = create_model("resnet20", num_classes=10, in_channels=1)
    graph = build_graph(model, (1, 32, 32), "resnet20")
    var_map = variables(graph.groups, "stage")
    space = search_space(cfg, list(var_map))
    assert space[TARGET].low == 0.09 and space[TARGET].high == 1.0
    points = with_targets(cfg, graph, var_map, warm_start_points(list(var_map), [0.5, 1.0], 0.3, 1.0, 0.05))
    full = count_cost(model, (1, 32, 32)).macs
    for p in points:
        spec = ChannelSpec.from_ratios(graph.groups, group_ratios(p, var_map), 1, "resnet20")
        pruned = build_graph(create_model("resnet20", num_classes=10, in_channels=1), (1, 32, 32), "resnet20")
        apply_spec(pruned, spec, "l1")
        assert abs(p[TARGET] - count_cost(pruned.model, (1, 32, 32)).macs / full) <= 0.011
    assert points[-1][TARGET] == 1.0 and 0.2 < points[0][TARGET] < 0.3  # keep 0.5 everywhere: about a quarter
    plain = validate_config({"name": "t", "search": {"granularity": "stage", "front_targets": False}})
    assert TARGET not in search_space(plain, list(var_map))
    assert with_targets(plain, graph, var_map, points[:1]) == points[:1]
    with pytest.raises(Exception, match="front_targets"):
        validate_config({"name": "t", "search": {"mode": "budget", "macs_target": 0.5, "front_targets": True}})


def test_spread_pulls_the_ratios_towards_their_mean_and_warm_starts_begin_at_uniform():
    from orchestrator.config import validate_config
    from orchestrator.space import SPREAD, TARGET, search_space, with_spread

    var_map = {"a": ["a1", "a2"], "b": ["b1"], "c": ["c1"]}
    params = {"a": 0.3, "b": 0.6, "c": 0.9}
    assert group_ratios({**params, SPREAD: 1.0}, var_map) == group_ratios(params, var_map)
    flat = group_ratios({**params, SPREAD: 0.0}, var_map)
    assert set(flat) == {"a1", "a2", "b1", "c1"} and max(abs(v - 0.6) for v in flat.values()) < 1e-12
    half = group_ratios({**params, SPREAD: 0.5}, var_map)
    assert abs(half["a2"] - 0.45) < 1e-12 and abs(half["c1"] - 0.75) < 1e-12

    cfg = validate_config({"name": "t"})  # front mode on MACs: on by default, with front_targets
    assert cfg.search.spread and cfg.search.front_targets and cfg.search.sampler == "tpe"
    space = search_space(cfg, list(var_map))
    assert (space[SPREAD].low, space[SPREAD].high) == (0.0, 1.0)
    uniform, method = dict.fromkeys(var_map, 0.5), {"a": 0.3, "b": 0.6, "c": 0.9}
    points = with_spread(cfg, [method, {**uniform, TARGET: 0.25}])
    assert [p[SPREAD] for p in points] == [1.0, 0.0]
    off = validate_config({"name": "t", "search": {"spread": False}})
    assert SPREAD not in search_space(off, list(var_map)) and with_spread(off, [method]) == [method]
    budget = validate_config({"name": "t", "search": {"mode": "budget", "macs_target": 0.5}})
    assert not budget.search.spread and budget.search.sampler == "nsga2"  # budget mode's measured defaults
    plain = validate_config({"name": "t", "search": {"front_targets": False}})
    assert not plain.search.spread and plain.search.sampler == "nsga2"
