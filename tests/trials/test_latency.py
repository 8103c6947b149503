"""Latency measured on both runtimes (trials/latency.py)."""

import sys
import time

import pytest
import torch
from torch import nn

from trials.errors import UserError
from trials.latency import LatencySettings, check_runtime, measure, measure_side_by_side, onnx_parity

FAST = LatencySettings(batch_size=4, threads=1, warmup=2, repeats=7)
SHAPE = (3, 32, 32)


def _conv(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))


def test_a_measurement_is_a_positive_median_with_its_spread_and_restores_threads():
    before = torch.get_num_threads()
    t = measure(_conv(8), SHAPE, FAST)
    assert t.median_ms > 0 and t.spread_ms >= 0 and t.repeats == 7
    assert torch.get_num_threads() == before


def test_side_by_side_a_wider_network_is_slower():
    small, wide = measure_side_by_side([_conv(4), _conv(96)], SHAPE, FAST)
    assert wide.median_ms > 3 * small.median_ms  # about 580x the MACs


def test_side_by_side_each_network_may_take_its_own_input_shape():
    """Layers of one shape timed beside a reference layer (bench.latency_steady): each is
    fed its own input; a list of ints is still one shape for all."""
    narrow = nn.Conv2d(4, 8, 3, padding=1)
    wide = nn.Conv2d(64, 64, 3, padding=1)
    a, b = measure_side_by_side([narrow, wide], [(4, 32, 32), (64, 32, 32)], FAST)
    assert b.median_ms > 3 * a.median_ms  # 128x the MACs
    with pytest.raises(RuntimeError):  # one shape for both: the wide conv cannot take 4 channels
        measure_side_by_side([narrow, wide], (4, 32, 32), FAST)
    (one,) = measure_side_by_side([narrow], [4, 32, 32], FAST)
    assert one.repeats == FAST.repeats


def test_onnxruntime_times_the_exported_network():
    pytest.importorskip("onnxruntime", reason="the latency extra is not installed: pip install 'prunetune[latency]'")
    small, wide = measure_side_by_side([_conv(4), _conv(96)], SHAPE, LatencySettings(runtime="onnxruntime", **_fast()))
    assert 0 < small.median_ms < wide.median_ms


def _fast() -> dict:
    return {"batch_size": 4, "threads": 1, "warmup": 2, "repeats": 7}


def test_onnxruntime_without_the_extra_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"prunetune\[latency\]"):
        check_runtime(LatencySettings(runtime="onnxruntime"))


def test_an_unknown_runtime_or_a_missing_device_is_refused():
    with pytest.raises(UserError, match="latency.runtime 'tensorrt' is unknown"):
        check_runtime(LatencySettings(runtime="tensorrt"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            check_runtime(LatencySettings(device="cuda"))


class _Sleeps(nn.Module):
    """A forward pass that waits 20 ms off the CPU, as when other processes hold the core."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        time.sleep(0.02)
        return self.conv(x)


def test_the_thread_clock_counts_the_forward_pass_not_time_off_the_cpu():
    wall = measure(_Sleeps(), SHAPE, FAST)
    thread = measure(_Sleeps(), SHAPE, LatencySettings(**_fast(), clock="thread"))
    assert wall.median_ms >= 20 and thread.median_ms < 10
    small, wide = measure_side_by_side([_conv(4), _conv(96)], SHAPE, LatencySettings(**_fast(), clock="thread"))
    assert wide.median_ms > 3 * small.median_ms > 0


def test_the_thread_clock_is_refused_off_one_cpu_thread():
    for settings in (LatencySettings(threads=None, clock="thread"), LatencySettings(threads=2, clock="thread")):
        with pytest.raises(UserError, match="latency.clock thread needs latency.device cpu and latency.threads 1"):
            check_runtime(settings)
    with pytest.raises(UserError, match="latency.clock 'cpu' is unknown"):
        check_runtime(LatencySettings(clock="cpu"))


def test_the_onnx_export_matches_pytorch_and_a_changed_weight_is_caught():
    pytest.importorskip("onnxruntime", reason="the latency extra is not installed: pip install 'prunetune[latency]'")
    from trials.latency import ONNX_RTOL, onnx_bytes

    torch.manual_seed(0)
    net, x = _conv(8).eval(), torch.randn(3, *SHAPE)
    exported = onnx_bytes(net, x[:1])
    assert onnx_parity(net, exported, x) < ONNX_RTOL  # batch 3 on a batch-1 export: the batch is dynamic
    with torch.no_grad():
        net[0].weight.mul_(1.1)  # the exported file no longer is this network
    assert onnx_parity(net, exported, x) > 10 * ONNX_RTOL
