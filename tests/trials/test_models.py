from __future__ import annotations

import pytest
import torch

from trials.errors import UserError
from trials.models import create_model, list_models


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
