"""AdaPruner (trials.adapruner): the allocation under a MACs budget, BN importance, the auto criterion."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.trials.conftest import DIGITS, _digits_trial, _random_gammas
from trials.adapruner import allocate, choose_criterion, group_importance
from trials.cost import count_cost
from trials.data import load_train_val
from trials.groups import build_graph
from trials.models import create_model
from trials.prune import rebuild
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig
from trials.trial import run_trial


# -- AdaPruner ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["resnet56", "mobilenet_v2"])
@pytest.mark.parametrize("target", [0.5, 0.3])
def test_adapruner_allocation_meets_the_macs_target_within_one_percent(arch, target):
    model = create_model(arch, num_classes=10, in_channels=3)
    _random_gammas(model)
    graph = build_graph(model, (3, 32, 32), arch)
    base = count_cost(model, (3, 32, 32)).macs
    spec, _ = allocate(graph, target * base, arch=arch)
    real = count_cost(rebuild(arch, spec, 10, 3, 32), (3, 32, 32)).macs  # the one counter, on a rebuilt network
    assert abs(real / base - target) <= 0.01 * target
    # counts follow importance: the most important group keeps a larger share than the least
    imp = group_importance(graph)
    ratios = spec.ratios(graph.groups)
    hi, lo = max(imp, key=imp.get), min(imp, key=imp.get)
    assert ratios[hi] > ratios[lo]


def test_group_importance_is_the_mean_bn_scale_of_the_group():
    model = create_model("resnet20")
    with torch.no_grad():
        model.bn1.weight.fill_(-0.3)  # |gamma|: the sign does not matter
        for name, m in model.named_modules():
            if name.startswith("layer1.") and name.endswith("bn2"):
                m.weight.fill_(2.0)
    imp = group_importance(build_graph(model, (3, 32, 32), "resnet20"))
    # conv1's group is the stem plus every layer1 residual output: bn1 at 0.3 and three bn2 at 2.0
    assert imp["conv1"] == pytest.approx((0.3 + 3 * 2.0) / 4)
    assert imp["layer1.0.conv1"] == pytest.approx(1.0)


def test_auto_picks_the_criterion_planted_to_be_best(digits_baseline):
    """Half the filters of every block's first conv are made dead in a way only BN scales
    see: large weights, but gamma = beta = 0. Magnitude criteria keep the dead half."""
    model = copy.deepcopy(digits_baseline)
    mods = dict(model.named_modules())
    spec_counts = {}
    with torch.no_grad():
        for name, m in mods.items():
            if name.endswith(".conv1") and name.startswith("layer"):
                bn = mods[name.replace("conv1", "bn1")]
                half = m.out_channels // 2
                m.weight[:half] *= 50.0
                bn.weight[:half] = 0.0
                bn.bias[:half] = 0.0
                spec_counts[name] = m.out_channels - half
    spec = ChannelSpec(spec_counts, "resnet20")
    splits = load_train_val(DIGITS)
    without_taylor = ("l1", "l2", "bn_scale", "random")
    best, scores = choose_criterion(
        model, (1, 8, 8), spec, splits.train, splits.val, torch.device("cpu"), candidates=without_taylor
    )
    assert best == "bn_scale", scores
    assert scores["bn_scale"] > scores["l1"] + 0.2
    # with every candidate, Taylor (which also sees the dead half) may tie; a magnitude one must not win
    best_all, scores_all = choose_criterion(model, (1, 8, 8), spec, splits.train, splits.val, torch.device("cpu"))
    assert best_all in ("bn_scale", "taylor") and set(scores_all) == {"l1", "l2", "bn_scale", "taylor", "random"}


def test_criterion_auto_in_a_trial_reports_its_choice(digits_baseline):
    cfg = _digits_trial(digits_baseline, keep=0.5, criterion="auto", finetune=FinetuneConfig(steps=2))
    result = run_trial(cfg)
    assert result["criterion"] in result["criterion_scores"]
    assert result["criterion_scores"][result["criterion"]] == max(result["criterion_scores"].values())
