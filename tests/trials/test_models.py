from __future__ import annotations

import pytest
import torch

from trials.cost import count_cost
from trials.errors import UserError
from trials.models import create_model, list_models


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnets_run_and_have_literature_depth(depth):
    model = create_model(f"resnet{depth}", num_classes=10)
    convs = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and "downsample" not in n]
    assert len(convs) + 1 == depth  # convs + the classifier
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet56_macs_match_the_literature():
    macs = count_cost(create_model("resnet56"), (3, 32, 32)).macs
    assert abs(macs - 126e6) / 126e6 < 0.02


@pytest.mark.parametrize("name", ["vgg16_bn", "mobilenet_v2", "torchvision/resnet18"])
def test_options_num_classes_and_in_channels(name):
    model = create_model(name, num_classes=7, in_channels=1)
    side = 64 if name.startswith("torchvision/") else 32
    assert model(torch.zeros(2, 1, side, side)).shape == (2, 7)


def test_registry_lists_torchvision_and_refuses_unknown_names():
    names = list_models()
    assert "resnet56" in names and "torchvision/resnet50" in names
    with pytest.raises(UserError, match="torchvision has no classification model 'nope'"):
        create_model("torchvision/nope")
    with pytest.raises(UserError, match="model 'resnet57' is unknown"):
        create_model("resnet57")
    with pytest.raises(UserError, match="num_classes"):
        create_model("resnet20", num_classes=1)
