"""One-shot pruning by a method (orchestrator.oneshot, `prunetune prune`): bad methods and
targets refused before any baseline, and each method's counts on the target."""

from __future__ import annotations

import pytest
import torch

from orchestrator.baseline import Baseline
from orchestrator.config import validate_config
from orchestrator.oneshot import check_method, method_spec
from trials.baseline import ModelInfo
from trials.cost import count_cost
from trials.errors import UserError
from trials.groups import build_graph
from trials.models import create_model
from trials.prune import rebuild

INFO = ModelInfo("resnet56", 10, 3, 32)


@pytest.mark.parametrize(
    "method,target,message",
    [
        ("magic", 0.5, "--method 'magic' is unknown"),
        ("uniform", 1.5, "--macs-target must be in"),
        ("uniform", 0.0, "--macs-target must be in"),
        ("adapruner", None, "--method adapruner needs --macs-target"),
        ("sensitivity", None, "--method sensitivity needs --macs-target"),
    ],
)
def test_a_bad_method_or_target_is_named(method, target, message):
    with pytest.raises(UserError, match=message):
        check_method(method, target)


def test_paam_may_go_without_a_target():
    check_method("paam", None)


@pytest.mark.parametrize("method", ["uniform", "adapruner"])
def test_each_method_lands_on_its_macs_target(method):
    model = create_model("resnet56")
    for i, bn in enumerate(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.weight.data.fill_(0.1 + (i % 5) / 5)  # BN importance differs from layer to layer
    macs = count_cost(model, (3, 32, 32)).macs
    base = Baseline(model, {"val_accuracy": 0.9, "macs": macs}, INFO)
    spec = method_spec(validate_config({"name": "p"}), base, method, 0.5, say=lambda _t: None)
    pruned = count_cost(rebuild("resnet56", spec, 10, 3, 32), (3, 32, 32)).macs
    assert abs(pruned / macs - 0.5) < 0.02
    ratios = [spec.channels[g.name] / g.channels for g in build_graph(model, (3, 32, 32)).groups]
    if method == "uniform":  # one share for every group, up to rounding to whole channels
        assert max(ratios) - min(ratios) < 0.1
    else:  # AdaPruner allocates by BN importance: the shares differ
        assert max(ratios) - min(ratios) > 0.1


def test_paam_needs_a_baseline_that_learned_its_scores():
    base = Baseline(create_model("resnet56"), {"val_accuracy": 0.9, "macs": 1.26e8}, INFO)
    with pytest.raises(UserError, match="baseline.regularizer: paam"):
        method_spec(validate_config({"name": "p"}), base, "paam", None)
