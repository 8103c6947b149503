from __future__ import annotations

import pytest
import torch

from trials.data import DataConfig, load_train_val
from trials.errors import TrialFailed
from trials.groups import build_graph
from trials.models import create_model
from trials.prune import prune
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig, evaluate, finetune, lr_factor, recalibrate_bn

CPU = torch.device("cpu")


def test_schedules():
    cos = FinetuneConfig(schedule="cosine")
    assert lr_factor(cos, 0, 100) == 1.0 and lr_factor(cos, 50, 100) == pytest.approx(0.5)
    step = FinetuneConfig(schedule="step", milestones=(0.5, 0.75), gamma=0.1)
    assert [lr_factor(step, s, 100) for s in (0, 60, 80)] == pytest.approx([1.0, 0.1, 0.01])
    assert lr_factor(FinetuneConfig(warmup_steps=4), 1, 100) == 0.5


def test_budget_in_steps_or_epochs():
    assert FinetuneConfig(epochs=1.5).total_steps(10) == 15
    assert FinetuneConfig(epochs=3, steps=7).total_steps(10) == 7


def test_brief_finetune_of_pruned_resnet20_beats_chance_on_digits():
    splits = load_train_val(DataConfig(name="digits", batch_size=64))
    model = create_model("resnet20", in_channels=1)
    graph = build_graph(create_model("resnet20", in_channels=1), (1, 32, 32))
    prune(model, ChannelSpec.from_ratios(graph.groups, 0.5), "l1")
    epochs = []
    finetune(model, splits.train, FinetuneConfig(epochs=3, lr=0.05), CPU, lambda e, loss: epochs.append(e))
    acc = evaluate(model, splits.val, CPU)["accuracy"]
    assert epochs == [1, 2, 3]
    assert acc > 0.6, acc  # chance is 0.1


def test_nan_loss_ends_training_with_a_clear_failure():
    splits = load_train_val(DataConfig(name="synthetic", batch_size=64))
    model = create_model("resnet20")
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    with pytest.raises(TrialFailed, match="non-finite"):
        finetune(model, splits.train, FinetuneConfig(steps=3), CPU)


def test_adaptive_bn_reestimates_running_stats_without_gradients():
    splits = load_train_val(DataConfig(name="synthetic", batch_size=64))
    model = create_model("resnet20")
    bn = model.bn1
    params = [p.detach().clone() for p in model.parameters()]
    recalibrate_bn(model, splits.train, 3, CPU)
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert bn.num_batches_tracked.item() == 3 and bn.momentum == 0.1 and not model.training
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
