"""The seed methods on small cases: AdaPruner, DAFP, FFR, PAAM, EagleEye's adaptive BN."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from trials.adapruner import allocate, choose_criterion, group_importance
from trials.baseline import ModelInfo, train_baseline
from trials.cost import count_cost
from trials.criteria import score_groups
from trials.data import DataConfig, load_train_val
from trials.errors import UserError
from trials.groups import build_graph
from trials.models import create_model
from trials.prune import rebuild
from trials.regularizers import DafpSparsity, FeatureFlow, PaamGates, bn_sparsity, feature_blocks, make_regularizer
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig
from trials.trial import TrialConfig, run_trial

DIGITS = DataConfig(name="digits", batch_size=64)
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


@pytest.fixture(scope="module")
def digits_baseline():
    torch.manual_seed(0)
    model, metrics = train_baseline(DIGITS_INFO, DIGITS, FinetuneConfig(epochs=4, lr=0.1), "cpu", log=None)
    assert metrics["val_accuracy"] > 0.8
    return model


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


# -- DAFP -----------------------------------------------------------------------------------
def test_dafp_criterion_multiplies_bn_scale_by_the_consumer_norm():
    model = create_model("resnet20")
    graph = build_graph(model, (3, 32, 32), "resnet20")
    with torch.no_grad():
        model.layer1[0].bn1.weight.copy_(torch.linspace(1.0, 2.0, 16))
        model.layer1[0].conv2.weight.zero_()
        model.layer1[0].conv2.weight[:, 3].fill_(1.0)  # only channel 3 is read by the next layer
    s = score_groups(graph, "dafp", ["layer1.0.conv1"])["layer1.0.conv1"]
    assert int(s.argmax()) == 3 and float(s[torch.arange(16) != 3].abs().max()) == 0.0
    expected = 1.0 + 3 / 15  # gamma of channel 3 x the l2 norm of its 16 x 3 x 3 ones
    assert float(s[3]) == pytest.approx(expected * math.sqrt(16 * 9), rel=1e-5)
    bn = score_groups(graph, "bn_scale", ["layer1.0.conv1"])["layer1.0.conv1"]
    assert int(bn.argmax()) == 15  # what BN scale alone would keep first


@pytest.mark.parametrize("target", [0.3, 0.6])
def test_dafp_controller_reaches_its_target_sparsity(target):
    reg = DafpSparsity(target=target, threshold=0.05)
    model, metrics = train_baseline(DIGITS_INFO, DIGITS, FinetuneConfig(epochs=5, lr=0.1), "cpu", log=None, reg=reg)
    reached = bn_sparsity(model, 0.05)
    assert abs(reached - target) <= 0.08, reg.history[-5:]
    weights = [h["dafp_weight"] for h in reg.history]
    assert max(weights) > 0 and len(weights) > 10  # the coefficient's course is recorded
    assert metrics["val_accuracy"] > 0.5


# -- FFR ------------------------------------------------------------------------------------
def test_feature_blocks_are_the_residual_blocks():
    model = create_model("resnet20")
    assert len(feature_blocks(model)) == 9
    vgg = create_model("vgg16_bn")
    assert len(feature_blocks(vgg)) >= 13  # no blocks: the activations form the flow


def test_ffr_raises_the_share_of_near_zero_bn_scales():
    runs = {}
    for name, reg in (("plain", None), ("ffr", FeatureFlow(weight=1.0))):
        model, metrics = train_baseline(DIGITS_INFO, DIGITS, FinetuneConfig(epochs=4, lr=0.1), "cpu", log=None, reg=reg)
        runs[name] = (bn_sparsity(model, 0.5), metrics["val_accuracy"])
    assert runs["ffr"][0] > runs["plain"][0] + 0.01, runs
    assert runs["ffr"][1] > 0.7


def test_ffr_penalty_is_zero_for_a_constant_flow():
    reg = FeatureFlow(weight=1.0)
    x = torch.ones(2, 4, 3, 3)
    assert float(reg.penalty_of([x, x.clone(), x.clone()])) == 0.0
    ramp = [x * k for k in (1.0, 2.0, 3.0)]  # straight line: a gradient, no curvature
    g = float(FeatureFlow(weight=1.0, curvature=0.0).penalty_of(ramp))
    assert g > 0 and float(FeatureFlow(weight=1.0, curvature=100.0).penalty_of(ramp)) == pytest.approx(g)


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
    _, metrics = train_baseline(
        DIGITS_INFO, DIGITS, FinetuneConfig(epochs=3, lr=0.02), "cpu", log=None, reg=reg, init=model
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


def test_paam_criterion_keeps_the_highest_learned_scores():
    model = create_model("resnet20")
    graph = build_graph(model, (3, 32, 32), "resnet20")
    learned = {"layer1.0.conv1": torch.arange(16.0)}
    s = score_groups(graph, "paam", ["layer1.0.conv1", "layer1.1.conv1"], learned=learned)
    assert torch.equal(s["layer1.0.conv1"], torch.arange(16.0))
    assert s["layer1.1.conv1"].shape == (16,)  # no scores for this group: l1
    with pytest.raises(UserError, match="learned filter scores"):
        score_groups(graph, "paam", ["conv1"])


# -- EagleEye -------------------------------------------------------------------------------
def test_adaptive_bn_evaluation_trains_nothing(digits_baseline):
    state = digits_baseline.state_dict()
    cfg = _digits_trial(digits_baseline, keep=0.6, evaluation="adaptive_bn", adaptive_bn_batches=5)
    reports = []
    result = run_trial(cfg, reports.append)
    assert reports == [] and result["epoch"] == 0 and 0.0 <= result["val_accuracy"] <= 1.0
    # no gradient step: the classifier's bias (never pruned) is the baseline's; BN stats are new
    assert torch.equal(result["state_dict"]["fc.bias"], state["fc.bias"])
    assert not torch.equal(result["state_dict"]["layer3.2.bn2.running_var"][:4], state["layer3.2.bn2.running_var"][:4])


def test_make_regularizer_names_bad_options():
    assert make_regularizer("none") is None
    with pytest.raises(UserError, match="unknown"):
        make_regularizer("l0")
    with pytest.raises(UserError, match="dafp"):
        make_regularizer("dafp", target=1.5)
    with pytest.raises(UserError, match="ffr"):
        make_regularizer("ffr", bogus=1)


def test_a_regularizer_is_found_through_the_registry_like_a_plugin(monkeypatch):
    """A method is a Regularizer subclass registered under its name: make_regularizer finds
    it by that name (as the built-in dafp, ffr and paam are), and a base without a penalty
    cannot be built."""
    from trials.regularizers import REGISTRY, REGULARIZERS, Regularizer, register

    assert REGULARIZERS == ("none", "dafp", "ffr", "paam")
    assert {REGISTRY[n].__name__ for n in REGULARIZERS[1:]} == {"DafpSparsity", "FeatureFlow", "PaamGates"}
    monkeypatch.setattr("trials.regularizers.base.REGISTRY", dict(REGISTRY))
    import trials.regularizers as regs

    monkeypatch.setattr(regs, "REGISTRY", regs.base.REGISTRY)

    @register
    class L2Scales(Regularizer):
        name = "l2scales"

        def __init__(self, weight: float = 1.0) -> None:
            super().__init__()
            self.weight = weight

        def penalty(self, model):
            return self.weight * sum((m.weight**2).sum() for m in regs.bn_layers(model))

    made = make_regularizer("l2scales", weight=0.5)
    assert isinstance(made, L2Scales) and made.weight == 0.5
    assert "l2scales" not in REGISTRY  # the test's registry was a copy
    with pytest.raises(TypeError, match="abstract"):
        Regularizer()
