"""MobileNetV2 for 32x32 inputs (trials.models.mobilenetv2): torchvision's blocks with the
CIFAR strides."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual

from trials.models.mobilenetv2 import SETTINGS, CifarMobileNetV2


def test_seventeen_inverted_residual_blocks_and_an_8x_downsampling_for_cifar():
    model = CifarMobileNetV2(num_classes=10)
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == sum(n for _t, _c, n, _s in SETTINGS) == 17
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 17 and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    feats = model.features(torch.zeros(1, 3, 32, 32))
    assert feats.shape == (1, 1280, 4, 4)  # stem and second stage at stride 1: 32 / 8
    assert model.classifier[-1].in_features == 1280


def test_the_width_multiplier_scales_every_stage():
    half = CifarMobileNetV2(width_mult=0.5)
    first = next(m for m in half.modules() if isinstance(m, nn.Conv2d))
    assert first.out_channels == 16 and half(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
