from __future__ import annotations

import random

import pytest
import torch

from trials.errors import UserError
from trials.groups import build_graph
from trials.models import create_model
from trials.prune import prune, rebuild
from trials.spec import ChannelSpec


def _random_spec(arch, side, seed=0):
    graph = build_graph(create_model(arch), (3, side, side), arch)
    rng = random.Random(seed)
    return graph, ChannelSpec({g.name: rng.randint(1, g.channels) for g in graph.groups}, arch)


@pytest.mark.parametrize("arch,side", [("resnet56", 32), ("mobilenet_v2", 32), ("torchvision/resnet50", 64)])
def test_random_specs_leave_exact_counts_and_a_runnable_network(arch, side):
    graph, spec = _random_spec(arch, side)
    model = prune(create_model(arch), spec, "l2", input_shape=(3, side, side), arch=arch)
    modules = dict(model.named_modules())
    for g in graph.groups:
        for member in g.members:
            m = modules[member]
            width = getattr(m, "out_channels", None) or getattr(m, "out_features", None) or m.num_features
            assert width == spec.channels[g.name], (g.name, member)
    assert model.eval()(torch.randn(2, 3, side, side)).shape == (2, 10)


def test_rebuild_loads_a_pruned_state_dict_without_pickle():
    _, spec = _random_spec("resnet20", 32, seed=3)
    pruned = prune(create_model("resnet20"), spec, "l1")
    fresh = rebuild("resnet20", ChannelSpec.from_json(spec.to_json()))
    fresh.load_state_dict(pruned.state_dict())
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(fresh.eval()(x), pruned.eval()(x))


def test_round_to_gives_multiples():
    graph = build_graph(create_model("resnet20"), (3, 32, 32))
    spec = ChannelSpec.from_ratios(graph.groups, 0.6, round_to=8)
    model = prune(create_model("resnet20"), spec)
    assert all(m.out_channels % 8 == 0 for m in model.modules() if isinstance(m, torch.nn.Conv2d))


PLANTED = [2, 5, 11]


def _planted_model(criterion):
    torch.manual_seed(0)
    model = create_model("resnet20")
    conv, bn = model.layer1[0].conv1, model.layer1[0].bn1
    with torch.no_grad():
        if criterion in ("l1", "l2"):
            conv.weight.mul_(1e-3)
            conv.weight[PLANTED] *= 1e4
        elif criterion == "bn_scale":
            bn.weight.fill_(0.01)
            bn.weight[PLANTED] = 1.0
        elif criterion == "taylor":  # channels that cannot change the loss score exactly 0
            mask = torch.zeros(16, dtype=torch.bool)
            mask[PLANTED] = True
            bn.weight[~mask] = 0.0
            bn.bias.zero_()
    return model


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn_scale", "taylor"])
def test_criteria_keep_the_planted_top_filters(criterion):
    model = _planted_model(criterion)
    before = model.layer1[0].conv1.weight.detach().clone()
    batches = [(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))) for _ in range(2)]
    prune(model, ChannelSpec({"layer1.0.conv1": 3}), criterion, batches=batches)
    torch.testing.assert_close(model.layer1[0].conv1.weight, before[PLANTED])


def test_random_criterion_is_a_seeded_control():
    def kept(seed):
        model = create_model("resnet20")
        before = model.layer1[0].conv1.weight.detach().clone()
        prune(model, ChannelSpec({"layer1.0.conv1": 4}), "random", seed=seed)
        after = model.layer1[0].conv1.weight
        return sorted(int((before - w).abs().sum((1, 2, 3)).argmin()) for w in after)

    assert kept(1) == kept(1)
    assert kept(1) != kept(2) or kept(1) != kept(3)


@pytest.mark.parametrize(
    "channels,message",
    [
        ({"nope": 3}, "unknown group 'nope'"),
        ({"conv1": 0}, "group 'conv1' must keep at least 1"),
        ({"layer3.0.conv1": 65}, "group 'layer3.0.conv1' has 64 channels"),
    ],
)
def test_bad_spec_raises_naming_the_group(channels, message):
    with pytest.raises(UserError, match=message):
        prune(create_model("resnet20"), ChannelSpec(channels), "l1")


def test_taylor_without_batches_and_unknown_criterion_are_user_errors():
    with pytest.raises(UserError, match="taylor"):
        prune(create_model("resnet20"), ChannelSpec({"conv1": 8}), "taylor")
    with pytest.raises(UserError, match="criterion 'l3' is unknown"):
        prune(create_model("resnet20"), ChannelSpec({"conv1": 8}), "l3")
