"""What a promoted network costs where it runs (orchestrator.deployment): timed side by side
with the baseline, and its ONNX export checked against PyTorch."""

from __future__ import annotations

import onnx
import pytest
import torch

import orchestrator.deployment as deployment
from trials.errors import UserError
from trials.groups import build_graph
from trials.latency import ONNX_RTOL, LatencySettings
from trials.models import create_model
from trials.prune import rebuild
from trials.spec import ChannelSpec

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def pair():
    baseline = create_model("resnet20", in_channels=1).eval()
    spec = ChannelSpec.from_ratios(build_graph(baseline, SHAPE).groups, 0.25, 1, "resnet20")
    return baseline, rebuild("resnet20", spec, 10, 1, 8).eval()


def test_speed_times_both_networks_at_two_batches_and_says_the_speedup(pair):
    out = deployment.speed(*pair, SHAPE, torch.device("cpu"))
    for bs in (1, 64):
        assert out[f"speedup_b{bs}"] == pytest.approx(out[f"baseline_latency_ms_b{bs}"] / out[f"latency_ms_b{bs}"])
        assert out[f"throughput_b{bs}"] == pytest.approx(bs / out[f"latency_ms_b{bs}"] * 1000)
    assert out["speedup_b64"] > 1.2  # a quarter of the channels: fewer MACs by far, and faster at batch 64


def test_deploy_latency_is_a_ratio_and_its_inverse(pair):
    out = deployment.deploy_latency(*pair, SHAPE, LatencySettings(warmup=1, repeats=5))
    assert out["latency_ratio"] == pytest.approx(out["latency_ms"] / out["baseline_latency_ms"])
    assert out["latency_ratio"] * out["latency_speedup"] == pytest.approx(1.0)
    assert out["latency_spread_ms"] >= 0


def test_the_onnx_export_is_checked_and_skipped_with_a_reason_without_the_extra(pair, monkeypatch):
    _, pruned = pair
    said = []
    exported, check = deployment.checked_onnx(pruned, SHAPE, said.append)
    assert onnx.load_from_string(exported).graph.input[0].name and check["onnx_rel_error"] < ONNX_RTOL
    assert said == []

    def missing(_settings):
        raise UserError("onnxruntime is not installed")

    monkeypatch.setattr(deployment, "check_runtime", missing)
    assert deployment.checked_onnx(pruned, SHAPE, said.append) == (None, {})
    assert said[-1].startswith("ONNX export skipped: it needs the latency extra")
