"""VGG-16-BN for 32x32 inputs (trials.models.vgg): the literature's 13 convs and 4 pools."""

from __future__ import annotations

import torch
from torch import nn

from trials.models.vgg import VGG16, CifarVGG


def test_thirteen_convs_four_pools_and_a_linear_on_the_pooled_512_features():
    model = CifarVGG(num_classes=7, in_channels=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [v for v in VGG16 if v != "M"] and len(convs) == 13
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
    assert all(c.bias is None for c in convs)  # BN follows every conv
    assert model.classifier.in_features == 512 and model(torch.zeros(2, 1, 32, 32)).shape == (2, 7)
