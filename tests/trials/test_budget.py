from __future__ import annotations

import random

import pytest

from trials.budget import MacsModel, project_ratios
from trials.cost import count_cost
from trials.groups import build_graph
from trials.models import create_model
from trials.prune import rebuild
from trials.spec import ChannelSpec


@pytest.mark.parametrize("arch", ["resnet56", "mobilenet_v2"])
@pytest.mark.parametrize("target", [0.4706, 0.3132])  # the seeds' cuts: 52.94% and 68.68% fewer MACs
def test_projection_lands_within_one_percent_of_the_target(arch, target):
    graph = build_graph(create_model(arch), (3, 32, 32), arch)
    base = count_cost(graph.model, (3, 32, 32)).macs
    rng = random.Random(1)
    ratios = {g.name: rng.uniform(0.3, 1.0) for g in graph.groups}
    spec, macs = project_ratios(graph, ratios, target * base, keep_min=0.1, arch=arch)
    real = count_cost(rebuild(arch, spec), (3, 32, 32)).macs
    assert real == macs and abs(real / base - target) <= 0.01 * target
    kept = spec.ratios(graph.groups)
    assert min(kept.values()) >= 0.1 - 1 / 16 and max(kept.values()) <= 1.0


def test_projection_scales_one_factor_and_keeps_the_shape_of_the_vector():
    graph = build_graph(create_model("resnet20"), (3, 32, 32), "resnet20")
    base = count_cost(graph.model, (3, 32, 32)).macs
    ratios = {g.name: (0.9 if i % 2 else 0.45) for i, g in enumerate(graph.groups)}
    spec, _ = project_ratios(graph, ratios, 0.5 * base, keep_min=0.05, arch="resnet20")
    kept = spec.ratios(graph.groups)
    odd = [kept[g.name] for i, g in enumerate(graph.groups) if i % 2]
    even = [kept[g.name] for i, g in enumerate(graph.groups) if not i % 2]
    assert min(odd) > max(even)  # the sampled preference survives the scaling


def test_analytic_model_agrees_with_the_counter():
    graph = build_graph(create_model("resnet56"), (3, 32, 32), "resnet56")
    rng = random.Random(0)
    spec = ChannelSpec({g.name: rng.randint(1, g.channels) for g in graph.groups})
    real = count_cost(rebuild("resnet56", spec), (3, 32, 32)).macs
    assert abs(MacsModel(graph)(spec.channels) - real) / real < 0.01


def test_a_check_far_below_the_target_cannot_walk_the_spec_up_to_the_unpruned_network():
    """A measured check that reads far too low (a noisy timing) moves the goal at most
    CORRECTION from the target: the spec stays a cut, not the whole network."""
    from trials.budget import CORRECTION

    graph = build_graph(create_model("resnet20"), (3, 32, 32), "resnet20")
    model = MacsModel(graph)
    full = model({g.name: g.channels for g in graph.groups})
    ratios = {g.name: 1.0 for g in graph.groups}
    spec, _ = project_ratios(
        graph, ratios, 0.5 * full, keep_min=0.1, cost=model, real=lambda s: 0.3 * model(s.channels), tol=0.01
    )
    assert model(spec.channels) <= CORRECTION * 0.5 * full * 1.05  # without the bound: the whole network


def _blocks(channels: dict, block: int) -> dict:
    return {n: -(-c // block) * block for n, c in channels.items()}


@pytest.mark.parametrize("target", [0.40, 0.55, 0.70])
def test_a_real_cost_in_steps_the_model_cannot_see_is_still_met_by_measurement(target):
    """The real cost moves in blocks of 8 channels (as CPU kernels do), the model is
    smooth: scaling one factor jumps over the target, so the bisection between the
    checked specs on either side, one group step at a time, lands within the tolerance
    (latency.tolerance's default, 5%: one group's step across a block moves up to 6%)."""
    graph = build_graph(create_model("resnet20"), (3, 16, 16), "resnet20")
    model = MacsModel(graph)
    full = model({g.name: g.channels for g in graph.groups})
    checks = []

    def real(spec: ChannelSpec) -> float:
        checks.append(spec)
        return model(_blocks(spec.channels, 8))

    ratios = {g.name: 1.0 for g in graph.groups}
    spec, value = project_ratios(graph, ratios, target * full, keep_min=0.1, cost=model, real=real, tol=0.05)
    assert value == real(spec)
    assert abs(value - target * full) <= 0.05 * target * full, (value / full, spec.channels)
    assert len(checks) <= 4 + 1 + 8 + 1  # the rounds, an end of the range, the bisection, this test
