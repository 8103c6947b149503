"""Latency over a conv layer's width: is it a staircase here, and where are its steps?

A ResNet's 3x3 convs (stride 1, the CIFAR ResNets' three stages: 16 channels at 32x32, 32
at 16x16, 64 at 8x8) are timed alone over every output width with the input full, and
over every input width with the output full, batch 16, one thread, on each runtime. The
latency table (trials/latency_table.py) interpolates linearly between ``table_levels``
measured widths, and ``round_to: auto`` (trials/alignment.py) looks for the multiple where
latency steps: this shows what both face. Run: ``python -m bench.latency_stairs`` (about
2 minutes).
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.report import machine, publish
from trials.latency import LatencySettings, measure, onnx_bytes
from trials.latency_table import _make_layer

STAGES = ((32, 16), (16, 32), (8, 64))  # (side, channels): the CIFAR ResNets' stages


def widths(settings: LatencySettings, side: int, full: int, side_of: str) -> dict[int, float]:
    """Median ms of the stage's 3x3 conv per width of ``side_of`` ("out" or "in"), the other full."""
    shape = {"kind": "conv", "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1]}
    shape |= {"bias": False, "hw": [side, side]}
    times = {}
    for c in range(1, full + 1):
        cin, cout = (full, c) if side_of == "out" else (c, full)
        layer, in_shape = _make_layer(shape, cin, cout)
        model = onnx_bytes(layer, torch.zeros(1, *in_shape)) if settings.runtime == "onnxruntime" else layer
        times[c] = measure(model, in_shape, settings).median_ms
    return times


def steps(times: dict[int, float], full: int) -> list[str]:
    """Widths where latency jumps by more than a quarter of the layer's whole span."""
    span = max(times.values()) - min(times.values())
    return [f"{c}->{c + 1}" for c in range(1, full) if abs(times[c + 1] - times[c]) > 0.25 * span]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnxruntime"])
    args = parser.parse_args()
    rows = []
    for runtime in args.runtimes:
        settings = LatencySettings(runtime=runtime, batch_size=16, threads=1, warmup=5, repeats=20)
        for side, full in STAGES:
            for side_of in ("out", "in"):
                t0 = time.perf_counter()
                times = widths(settings, side, full, side_of)
                rows.append({"runtime": runtime, "side": side, "full": full, "width_of": side_of, "ms": times,
                             "steps": steps(times, full), "seconds": time.perf_counter() - t0})  # fmt: skip
                print(rows[-1]["runtime"], side, full, side_of, rows[-1]["steps"], flush=True)
    lines = [
        "## Latency over a layer's width: the staircase",
        "",
        "`python -m bench.latency_stairs`. A 3x3 conv of each CIFAR-ResNet stage timed alone over every output "
        "width (input full) and every input width (output full), batch 16, one thread, median of 20 runs after 5. "
        "Steps: widths where latency jumps by more than a quarter of the layer's span. Milliseconds at the widths "
        "a 6-level latency table measures and between them.",
        f"Machine: {machine()}.",
        "",
        "| runtime | layer | width of | steps | ms by width |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ms = r["ms"]
        shown = sorted({1, *range(r["full"] // 4, r["full"] + 1, max(1, r["full"] // 16))} & set(ms))
        lines.append(
            f"| {r['runtime']} | {r['full']} ch at {r['side']}x{r['side']} | {r['width_of']} | "
            f"{', '.join(r['steps']) or 'none'} | " + " ".join(f"{c}: {ms[c]:.3f}" for c in shown) + " |"
        )
    publish("latency_stairs", {"machine": machine(), "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
