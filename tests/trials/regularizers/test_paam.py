"""PAAM's attention gates (trials.regularizers.paam)."""

from __future__ import annotations

import copy

import torch

from tests.trials.conftest import DIGITS, DIGITS_INFO
from trials.baseline import train_baseline
from trials.models import create_model
from trials.regularizers import PaamGates
from trials.train import FinetuneConfig


# -- PAAM -----------------------------------------------------------------------------------
def test_paam_scores_fall_below_threshold_for_planted_useless_filters(digits_baseline):
    model = copy.deepcopy(digits_baseline)
    planted = {"layer1.0.conv1": [0, 1, 2, 3], "layer2.1.conv1": [5, 6, 7, 8, 9, 10]}
    mods = dict(model.named_modules())
    with torch.no_grad():
        for conv, idx in planted.items():
            bn = mods[conv.replace("conv", "bn")]
            mods[conv].weight[idx] = 0.0
            bn.weight[idx] = 0.0
            bn.bias[idx] = 0.0
    reg = PaamGates(weight=1e-3, warmup=0.0)
    # 5 epochs: after 3, one thread's arithmetic (xdist's workers run torch on one) left the
    # planted filters of layer1.0.conv1 at 0.73 (the zeroed channel's BN bias regrows and the
    # loss uses it as a bias); after 5, every planted score was under 0.16 in 5 runs (seeds
    # 0-2, one and two threads)
    _, metrics = train_baseline(
        DIGITS_INFO, DIGITS, FinetuneConfig(epochs=5, lr=0.02), "cpu", log=None, reg=reg, init=model
    )
    for conv, idx in planted.items():
        s = reg.final_scores[conv]
        mask = torch.zeros(len(s), dtype=torch.bool)
        mask[idx] = True
        assert float(s[mask].max()) < 0.5, (conv, s)
        assert float(s[mask].mean()) < float(s[~mask].median()), (conv, s)
    assert set(metrics["scores"]) >= {"layer1.0.conv1", "layer2.1.conv1"}  # per group, for the criterion


def test_paam_folds_its_gates_so_the_plain_network_computes_the_same():
    model = create_model("resnet20", num_classes=10, in_channels=1).eval()
    reg = PaamGates()
    reg.attach(model)
    with torch.no_grad():
        for att in reg.modules.values():
            att.offset.uniform_(-2, 2)
        x = torch.randn(4, 1, 8, 8)
        gated = model(x)
    reg.detach(model)
    with torch.no_grad():
        assert torch.allclose(model(x), gated, atol=1e-5)
