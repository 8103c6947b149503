"""The CUDA path: bf16 autocast, channels_last, on-device data, latency. Skipped without a GPU."""

from __future__ import annotations

import math

import pytest
import torch

from trials.cost import measure_latency
from trials.data import DataConfig
from trials.latency import LatencySettings
from trials.models import create_model
from trials.train import FinetuneConfig
from trials.trial import TrialConfig, run_trial

pytestmark = pytest.mark.gpu


def test_trial_runs_on_cuda_with_bf16_and_channels_last():
    cfg = TrialConfig(
        arch="resnet56",
        baseline=create_model("resnet56").state_dict(),
        data=DataConfig(name="synthetic", batch_size=128, synthetic_train=2048),
        keep=0.6,
        adaptive_bn_batches=4,
        finetune=FinetuneConfig(epochs=2, lr=0.05),
        latency=LatencySettings(device="cuda", batch_size=256),
        device="cuda",
    )
    reports = []
    result = run_trial(cfg, reports.append)
    assert len(reports) == 2 and all(math.isfinite(r["val_loss"]) for r in reports)
    assert result["val_accuracy"] > 0.3 and result["latency_ms"] > 0
    assert all(v.device.type == "cpu" for v in result["state_dict"].values())


def test_pruned_network_is_faster_on_cuda():
    from trials.groups import build_graph
    from trials.prune import prune
    from trials.spec import ChannelSpec

    shape = (3, 32, 32)
    full = create_model("resnet56").cuda()
    graph = build_graph(create_model("resnet56"), shape)
    cut = prune(create_model("resnet56").cuda(), ChannelSpec.from_ratios(graph.groups, 0.5, round_to=8), "l1")
    t_full = measure_latency(full.to(memory_format=torch.channels_last), shape, 512, repeats=30)
    t_cut = measure_latency(cut.to(memory_format=torch.channels_last), shape, 512, repeats=30)
    assert t_cut < t_full
