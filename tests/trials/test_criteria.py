"""Filter-importance criteria (trials.criteria): DAFP's consumer-aware score, PAAM's learned scores."""

from __future__ import annotations

import math

import pytest
import torch

from trials.criteria import score_groups
from trials.errors import UserError
from trials.groups import build_graph
from trials.models import create_model


# -- DAFP -----------------------------------------------------------------------------------
def test_dafp_criterion_multiplies_bn_scale_by_the_consumer_norm():
    model = create_model("resnet20")
    graph = build_graph(model, (3, 32, 32), "resnet20")
    with torch.no_grad():
        model.layer1[0].bn1.weight.copy_(torch.linspace(1.0, 2.0, 16))
        model.layer1[0].conv2.weight.zero_()
        model.layer1[0].conv2.weight[:, 3].fill_(1.0)  # only channel 3 is read by the next layer
    s = score_groups(graph, "dafp", ["layer1.0.conv1"])["layer1.0.conv1"]
    assert int(s.argmax()) == 3 and float(s[torch.arange(16) != 3].abs().max()) == 0.0
    expected = 1.0 + 3 / 15  # gamma of channel 3 x the l2 norm of its 16 x 3 x 3 ones
    assert float(s[3]) == pytest.approx(expected * math.sqrt(16 * 9), rel=1e-5)
    bn = score_groups(graph, "bn_scale", ["layer1.0.conv1"])["layer1.0.conv1"]
    assert int(bn.argmax()) == 15  # what BN scale alone would keep first


def test_paam_criterion_keeps_the_highest_learned_scores():
    model = create_model("resnet20")
    graph = build_graph(model, (3, 32, 32), "resnet20")
    learned = {"layer1.0.conv1": torch.arange(16.0)}
    s = score_groups(graph, "paam", ["layer1.0.conv1", "layer1.1.conv1"], learned=learned)
    assert torch.equal(s["layer1.0.conv1"], torch.arange(16.0))
    assert s["layer1.1.conv1"].shape == (16,)  # no scores for this group: l1
    with pytest.raises(UserError, match="learned filter scores"):
        score_groups(graph, "paam", ["conv1"])
