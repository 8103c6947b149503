"""The CIFAR ResNets (trials.models.cifar_resnet): the literature's depths and MACs."""

from __future__ import annotations

import pytest
import torch

from trials.cost import count_cost
from trials.models import create_model


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnets_run_and_have_literature_depth(depth):
    model = create_model(f"resnet{depth}", num_classes=10)
    convs = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and "downsample" not in n]
    assert len(convs) + 1 == depth  # convs + the classifier
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet56_macs_match_the_literature():
    macs = count_cost(create_model("resnet56"), (3, 32, 32)).macs
    assert abs(macs - 126e6) / 126e6 < 0.02
