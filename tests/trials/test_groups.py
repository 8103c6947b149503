from __future__ import annotations

import pytest
import torch

from trials.errors import UserError
from trials.groups import build_graph
from trials.models import create_model

CASES = [
    ("resnet20", 32),
    ("resnet56", 32),
    ("resnet110", 32),
    ("vgg16_bn", 32),
    ("mobilenet_v2", 32),
    ("torchvision/resnet18", 64),
    ("torchvision/resnet50", 64),
    ("torchvision/mobilenet_v2", 64),
    ("torchvision/vgg11_bn", 32),
    ("torchvision/efficientnet_b0", 64),
    ("torchvision/densenet121", 64),
]


@pytest.mark.parametrize("arch,side", CASES)
def test_groups_cover_every_prunable_layer_once(arch, side):
    model = create_model(arch, num_classes=10)
    graph = build_graph(model, (3, side, side), arch)
    names = [g.name for g in graph.groups]
    assert len(names) == len(set(names)) and "/" not in "".join(names)
    modules = dict(model.named_modules())
    members = [m for g in graph.groups for m in g.members]
    assert len(members) == len(set(members)), "a layer belongs to two groups"
    for g in graph.groups:
        root = modules[g.name]
        width = next(getattr(root, a) for a in ("out_channels", "out_features", "num_features") if hasattr(root, a))
        assert g.channels == width, (g.name, g.channels, width)
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert classifier not in [modules[m] for m in members], "classifier outputs must never be pruned"
    # Names are stable: a second build of the same architecture gives the same groups.
    again = build_graph(create_model(arch, num_classes=10), (3, side, side), arch)
    assert [(g.name, g.channels) for g in again.groups] == [(g.name, g.channels) for g in graph.groups]


def test_residual_sum_couples_convs_into_one_group():
    graph = build_graph(create_model("resnet20"), (3, 32, 32), "resnet20")
    groups = graph.by_name()
    stem = groups["conv1"].members
    assert {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"} <= set(stem)
    stage2 = next(g for g in graph.groups if "layer2.0.downsample.0" in g.members)
    assert {"layer2.0.conv2", "layer2.2.conv2"} <= set(stage2.members) and stage2.channels == 32
    assert groups["layer1.0.conv1"].members == ("layer1.0.conv1", "layer1.0.bn1")
    assert len(graph.groups) == 9 + 3  # one per block's first conv, one per stage
    assert [g.stage for g in graph.groups] == sorted(g.stage for g in graph.groups)


def test_network_input_is_never_pruned():
    graph = build_graph(create_model("resnet20", in_channels=1), (1, 32, 32), "resnet20")
    graph.remove("conv1", list(range(8)))
    assert graph.model.conv1.in_channels == 1 and graph.model.conv1.out_channels == 8


def test_unsupported_models_get_a_clear_error():
    with pytest.raises(UserError, match="channel shuffles"):
        build_graph(create_model("torchvision/shufflenet_v2_x0_5"), (3, 64, 64), "torchvision/shufflenet_v2_x0_5")
