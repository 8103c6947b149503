"""Feature flow regularization (trials.regularizers.ffr)."""

from __future__ import annotations

import pytest
import torch

from tests.trials.conftest import DIGITS, DIGITS_INFO
from trials.baseline import train_baseline
from trials.models import create_model
from trials.regularizers import FeatureFlow, bn_sparsity, feature_blocks
from trials.train import FinetuneConfig


# -- FFR ------------------------------------------------------------------------------------
def test_feature_blocks_are_the_residual_blocks():
    model = create_model("resnet20")
    assert len(feature_blocks(model)) == 9
    vgg = create_model("vgg16_bn")
    assert len(feature_blocks(vgg)) >= 13  # no blocks: the activations form the flow


def test_ffr_raises_the_share_of_near_zero_bn_scales(digits_baseline):
    """Trained as the session's plain digits baseline was (4 epochs, lr 0.1), with FFR."""
    reg = FeatureFlow(weight=1.0)
    model, metrics = train_baseline(DIGITS_INFO, DIGITS, FinetuneConfig(epochs=4, lr=0.1), "cpu", log=None, reg=reg)
    plain, ffr = bn_sparsity(digits_baseline, 0.5), bn_sparsity(model, 0.5)
    assert ffr > plain + 0.01, (ffr, plain)
    assert metrics["val_accuracy"] > 0.7


def test_ffr_penalty_is_zero_for_a_constant_flow():
    reg = FeatureFlow(weight=1.0)
    x = torch.ones(2, 4, 3, 3)
    assert float(reg.penalty_of([x, x.clone(), x.clone()])) == 0.0
    ramp = [x * k for k in (1.0, 2.0, 3.0)]  # straight line: a gradient, no curvature
    g = float(FeatureFlow(weight=1.0, curvature=0.0).penalty_of(ramp))
    assert g > 0 and float(FeatureFlow(weight=1.0, curvature=100.0).penalty_of(ramp)) == pytest.approx(g)
