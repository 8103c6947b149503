from __future__ import annotations

import torch
from torch import nn

from trials.cost import count_cost, measure_latency
from trials.models import create_model
from trials.prune import prune
from trials.spec import ChannelSpec


def test_macs_are_counted_on_the_network_not_estimated():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    assert count_cost(conv, (3, 16, 16)).macs == 3 * 8 * 9 * 16 * 16
    assert count_cost(conv, (3, 16, 16)).params == 3 * 8 * 9


def test_pruning_cuts_macs_roughly_quadratically_in_width():
    base = count_cost(create_model("resnet56"), (3, 32, 32))
    half = prune(create_model("resnet56"), ChannelSpec({}), "l1")  # empty spec: unchanged
    assert count_cost(half, (3, 32, 32)) == base
    from trials.groups import build_graph

    graph = build_graph(create_model("resnet56"), (3, 32, 32))
    pruned = prune(create_model("resnet56"), ChannelSpec.from_ratios(graph.groups, 0.5), "l1")
    ratio = count_cost(pruned, (3, 32, 32)).macs / base.macs
    assert 0.2 < ratio < 0.3


def test_latency_is_a_positive_median():
    ms = measure_latency(create_model("resnet20"), (3, 32, 32), batch_size=4, warmup=1, repeats=3)
    assert ms > 0 and isinstance(ms, float)
    assert torch.is_grad_enabled()
