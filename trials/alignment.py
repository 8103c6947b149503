"""Hardware-aligned widths (``round_to: auto``): which channel multiple gives real steps in
latency on the deployment runtime and device.

Kernels work on blocks of channels (oneDNN's 8 or 16 floats on AVX2/AVX-512, tensor
cores' 8 or 16 on GPUs), so latency over a layer's width is often a staircase: keeping 57
channels costs what 64 cost. One prunable layer of the network (``timed_layer``) is timed
over a window of output widths, and a multiple ``m`` is taken as real when going from an odd
multiple of m/2 to the next multiple of m costs less than a quarter of what it would cost
if latency followed the channel count (the MACs' view). The largest such ``m`` wins, at most
half the narrowest prunable group (so that every group keeps a choice); none: 1.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import torch

from trials.groups import ChannelGraph
from trials.latency import LatencySettings, check_runtime, measure, onnx_bytes
from trials.latency_table import _make_layer, table_layers

CANDIDATES = (2, 4, 8, 16, 32, 64)
WINDOW = 64  # output widths timed: the last WINDOW + 1 below the layer's full width
SHARE = 0.25  # a multiple is real when rounding up costs under this share of the MACs' view
MEASURABLE = 0.04  # multiples whose predicted step is smaller are not judged (timing noise)
# the layer timed is the heaviest at most this wide: a step of m/2 channels is then at least
# 4% of its width for m >= 8 (judged); on a wider layer it is not (MobileNetV2's 1280-wide
# layer judged no multiple, and auto kept any count, where networks rounded to 8 ran 2.5x
# faster on ONNX Runtime: docs/benchmarks.md)
NARROW = 96


def choose_multiple(times: dict[int, float], candidates=CANDIDATES) -> tuple[int, dict[int, dict]]:
    """The largest candidate multiple ``m`` with a real step, from ``times`` (output width
    -> latency); with the evidence. ``m`` is real when going from an odd multiple of m/2
    up to the next multiple of m (c -> c + m/2) costs under ``SHARE`` of what the channel
    count predicts (m/2 / c): those channels ride in a block that is paid for anyway."""
    evidence: dict[int, dict] = {}
    chosen = 1
    for m in candidates:
        h = m // 2
        pairs = [(c, c + h) for c in times if c % m == h and c + h in times]
        if len(pairs) < 2:
            continue  # the window holds too few widths to judge this multiple
        observed = statistics.median(times[u] / times[c] - 1 for c, u in pairs)
        predicted = statistics.median(h / c for c, _ in pairs)
        if predicted < MEASURABLE:
            continue  # a step this small is below what timing can tell apart
        real = observed < SHARE * predicted
        evidence[m] = {"observed": observed, "predicted": predicted, "pairs": len(pairs), "real": real}
        if real:
            chosen = m
    return chosen, evidence


def timed_layer(graph: ChannelGraph):
    """The prunable conv or linear layer (not depthwise) ``round_to: auto`` times, with the
    table's layer shapes: the heaviest (MACs) at most ``NARROW`` wide, the widest among equals;
    where every layer is wider, the widest (then the heaviest). None where none is prunable."""
    layers, shapes = table_layers(graph)
    prunable = [layer for layer in layers if layer.out_group is not None and not layer.depthwise]
    if not prunable:
        return None, shapes

    def macs(layer) -> float:
        k = math.prod(shapes[layer.shape].get("kernel", [1]))
        return layer.out_numel * layer.in_width * k

    narrow = [layer for layer in prunable if layer.out_width <= NARROW]
    if narrow:
        return max(narrow, key=lambda layer: (macs(layer), layer.out_width)), shapes
    return max(prunable, key=lambda layer: (layer.out_width, macs(layer))), shapes


def layer_times(graph: ChannelGraph, settings: LatencySettings) -> tuple[str, dict[int, float]]:
    """``timed_layer`` timed alone over its last ``WINDOW`` + 1 output widths; its name and
    width -> median ms."""
    check_runtime(settings)
    heavy, shapes = timed_layer(graph)
    if heavy is None:
        return "", {}
    shape = shapes[heavy.shape]
    times = {}
    for c in range(max(1, heavy.out_width - WINDOW), heavy.out_width + 1):
        layer, in_shape = _make_layer(shape, heavy.in_width, c)
        model = onnx_bytes(layer, torch.zeros(1, *in_shape)) if settings.runtime == "onnxruntime" else layer
        times[c] = measure(model, in_shape, settings).median_ms
    return heavy.name, times


def auto_round_to(graph: ChannelGraph, settings: LatencySettings, timer: Callable | None = None) -> tuple[int, dict]:
    """``round_to: auto``: the channel multiple with real latency steps here, and a report
    (the layer timed, its times, the evidence per candidate multiple)."""
    name, times = (timer or layer_times)(graph, settings)
    found, evidence = choose_multiple(times)
    cap = max(1, min((g.channels for g in graph.groups), default=2) // 2)
    chosen = max(m for m in (1, *CANDIDATES) if m <= min(found, cap))
    return chosen, {
        "layer": name,
        "times_ms": times,
        "evidence": evidence,
        "found": found,
        "cap": cap,
        "round_to": chosen,
    }
