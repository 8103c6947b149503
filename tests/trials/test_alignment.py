"""round_to: auto (trials/alignment.py): the channel multiple with real latency steps."""

import math

import torch

from trials.alignment import CANDIDATES, NARROW, WINDOW, auto_round_to, choose_multiple, timed_layer
from trials.groups import build_graph
from trials.latency import LatencySettings
from trials.models import create_model


def _stairs(step: int, noise: float = 0.0, seed: int = 0) -> dict[int, float]:
    g = torch.Generator().manual_seed(seed)
    return {
        c: (0.2 + 0.05 * math.ceil(c / step)) * (1 + noise * float(torch.randn(1, generator=g))) for c in range(64, 129)
    }


def test_a_staircase_of_8_or_16_is_found_and_smooth_latency_keeps_every_width():
    assert choose_multiple(_stairs(8))[0] == 8
    assert choose_multiple(_stairs(16))[0] == 16
    assert choose_multiple(_stairs(8, noise=0.01, seed=3))[0] == 8  # timing noise of 1%
    smooth = {c: 0.01 * c for c in range(64, 129)}  # latency follows the channel count
    chosen, evidence = choose_multiple(smooth)
    assert chosen == 1 and evidence and not any(e["real"] for e in evidence.values())


def test_auto_round_to_times_the_heaviest_layer_over_a_window_of_widths():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3).eval()
    graph = build_graph(model, (3, 16, 16), "resnet20")
    fast = LatencySettings(batch_size=4, threads=1, warmup=1, repeats=3)
    chosen, report = auto_round_to(graph, fast)
    assert chosen in (1, *CANDIDATES) and report["round_to"] == chosen
    assert len(report["times_ms"]) == min(WINDOW, 64 - 1) + 1 and all(t > 0 for t in report["times_ms"].values())
    assert report["layer"].startswith("layer3")  # a conv of the last stage: the widest (64)


def test_the_multiple_is_capped_at_half_the_narrowest_group():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3).eval()
    graph = build_graph(model, (3, 16, 16), "resnet20")
    chosen, report = auto_round_to(graph, LatencySettings(), timer=lambda g, s: ("layer3", _stairs(32)))
    assert report["found"] == 32 and report["cap"] == 8 and chosen == 8  # 16-wide stage-1 groups keep 8 or 16


def test_the_layer_timed_is_narrow_enough_to_judge_a_multiple():
    """The heaviest layer at most NARROW wide: on MobileNetV2 not its 1280-wide layer, where a
    step of 32 channels is 2.6% of the width and no multiple was judged (auto kept any count);
    on ResNet-20 a 64-wide conv of the last stage, as before."""
    graph = build_graph(create_model("mobilenet_v2", 10, 3).eval(), (3, 32, 32), "mobilenet_v2")
    layer, _ = timed_layer(graph)
    assert layer.out_width <= NARROW and not layer.depthwise
    assert max(g.channels for g in graph.groups) == 1280
    graph = build_graph(create_model("resnet20", 10, 3).eval(), (3, 32, 32), "resnet20")
    layer, _ = timed_layer(graph)
    assert layer.name.startswith("layer3") and layer.out_width == 64
