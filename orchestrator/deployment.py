"""What a promoted network costs where it will run: latency and throughput beside the
baseline's, on the training device and on the search's deployment runtime, and its ONNX
export checked against PyTorch."""

from __future__ import annotations

import copy

import torch

from trials.errors import UserError
from trials.latency import (
    ONNX_EXTRA,
    ONNX_RTOL,
    LatencySettings,
    check_runtime,
    measure_side_by_side,
    onnx_bytes,
    onnx_parity,
)


def speed(baseline: torch.nn.Module, pruned: torch.nn.Module, shape: tuple, device: torch.device) -> dict:
    """Latency and throughput of both networks on the training device (torch runtime; on
    CUDA channels_last and bf16, as trials run), timed side by side in alternating rounds so
    that a burst of load elsewhere falls on both."""
    out = {}
    for bs in (1, 64):
        settings = LatencySettings("torch", str(device), bs, None, 5, 20)
        mine, base = measure_side_by_side([pruned.to(device), baseline.to(device)], shape, settings)
        for tag, ms in (("baseline_", base.median_ms), ("", mine.median_ms)):
            out[f"{tag}latency_ms_b{bs}"] = ms
            out[f"{tag}throughput_b{bs}"] = bs / ms * 1000.0
        out[f"speedup_b{bs}"] = out[f"baseline_latency_ms_b{bs}"] / out[f"latency_ms_b{bs}"]
    return out


def deploy_latency(baseline: torch.nn.Module, pruned: torch.nn.Module, shape: tuple, settings) -> dict:
    """Latency on the search's runtime and device (``latency:``), the promoted network and
    the baseline timed side by side in alternating rounds."""
    mine, base = measure_side_by_side([copy.deepcopy(pruned), copy.deepcopy(baseline)], shape, settings)
    return {
        "latency_ms": mine.median_ms,
        "latency_spread_ms": mine.spread_ms,
        "baseline_latency_ms": base.median_ms,
        "latency_ratio": mine.median_ms / base.median_ms,
        "latency_speedup": base.median_ms / mine.median_ms,
    }


def checked_onnx(model: torch.nn.Module, shape: tuple, say) -> tuple[bytes | None, dict]:
    """The promoted network exported to ONNX (batch dynamic) and checked: onnxruntime's
    outputs on a random batch against PyTorch's, within ``ONNX_RTOL`` of the largest. No
    ONNX is stored when the check fails or the latency extra is missing (said so)."""
    try:
        check_runtime(LatencySettings(runtime="onnxruntime"))
    except UserError:
        say(f"ONNX export skipped: it needs the latency extra, {ONNX_EXTRA}")
        return None, {}
    torch.manual_seed(0)
    exported = onnx_bytes(model, torch.zeros(1, *shape))
    error = onnx_parity(model, exported, torch.randn(4, *shape))
    if error > ONNX_RTOL:
        say(f"ONNX export not stored: its outputs differ from PyTorch's by {error:.2e} of the largest (> {ONNX_RTOL})")
        return None, {"onnx_rel_error": error}
    return exported, {"onnx_rel_error": error}
