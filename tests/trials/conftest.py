"""Fixtures and helpers shared by the trials tests: a briefly trained ResNet-20 on digits (once per session)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trials.baseline import ModelInfo, train_baseline
from trials.data import DataConfig
from trials.train import FinetuneConfig
from trials.trial import TrialConfig

# at the digits' own 8x8 (not the default 32x32): the regularizer tests train for 5 epochs, 5-10x
# faster here, and every one of them holds with the same margins
DIGITS = DataConfig(name="digits", batch_size=64, image_size=8)
DIGITS_INFO = ModelInfo("resnet20", 10, 1, 8)


def _random_gammas(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            level = float(torch.rand(1, generator=g)) + 0.05  # groups differ in importance
            m.weight.data = level * (0.5 + torch.rand(m.num_features, generator=g))


def _digits_trial(model: nn.Module, **kw) -> TrialConfig:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return TrialConfig(arch="resnet20", baseline=state, data=DIGITS, device="cpu", **kw)


@pytest.fixture(scope="session")
def digits_baseline():
    torch.manual_seed(0)
    model, metrics = train_baseline(DIGITS_INFO, DIGITS, FinetuneConfig(epochs=4, lr=0.1), "cpu", log=None)
    assert metrics["val_accuracy"] > 0.8
    return model
