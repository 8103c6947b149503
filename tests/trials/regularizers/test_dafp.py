"""DAFP's sparsity controller (trials.regularizers.dafp)."""

from __future__ import annotations

import pytest

from tests.trials.conftest import DIGITS, DIGITS_INFO
from trials.baseline import train_baseline
from trials.regularizers import DafpSparsity, bn_sparsity
from trials.train import FinetuneConfig


@pytest.mark.parametrize("target", [0.3, 0.6])
def test_dafp_controller_reaches_its_target_sparsity(target):
    reg = DafpSparsity(target=target, threshold=0.05)
    model, metrics = train_baseline(DIGITS_INFO, DIGITS, FinetuneConfig(epochs=5, lr=0.1), "cpu", log=None, reg=reg)
    reached = bn_sparsity(model, 0.05)
    assert abs(reached - target) <= 0.08, reg.history[-5:]
    weights = [h["dafp_weight"] for h in reg.history]
    assert max(weights) > 0 and len(weights) > 10  # the coefficient's course is recorded
    assert metrics["val_accuracy"] > 0.5
