"""How repeatable one side-by-side latency check is: the ratio budget mode checks.

ResNet-20 (1 channel in, 16x16) cut to 0.6 of its channels is timed beside the whole
network as a trial's check does (torch, batch 32, one thread, 10 warm-up rounds, then 30
alternating repeats), 25 checks in a row. Two ways to turn a check into a ratio are
compared: the ratio of the two medians (what trials use) and the median of the 30
paired per-round ratios. Printed: the median over checks, the standard deviation, and
the worst check's distance from the median. ``python -m bench.latency_repeat``.
"""

from __future__ import annotations

import statistics
import time

import torch

from trials.groups import build_graph
from trials.latency import LatencySettings, _Threads, runner
from trials.models import create_model
from trials.prune import rebuild
from trials.spec import ChannelSpec

CHECKS, KEEP, SHAPE = 25, 0.6, (1, 16, 16)


def main() -> None:
    torch.manual_seed(0)
    full = create_model("resnet20", 10, 1).eval()
    graph = build_graph(full, SHAPE, "resnet20")
    spec = ChannelSpec.from_ratios(graph.groups, {g.name: KEEP for g in graph.groups}, 1, "resnet20")
    cut = rebuild("resnet20", spec, 10, 1, SHAPE[-1]).eval()
    settings = LatencySettings(batch_size=32, threads=1, warmup=10, repeats=30)
    of_medians, paired = [], []
    with _Threads(1):
        runs = [runner(m, SHAPE, settings) for m in (cut, full)]
        for _ in range(settings.warmup):
            for run in runs:
                run()
        for _ in range(CHECKS):
            times: tuple[list[float], list[float]] = ([], [])
            for _ in range(settings.repeats):
                for run, out in zip(runs, times):
                    t0 = time.perf_counter()
                    run()
                    out.append(time.perf_counter() - t0)
            of_medians.append(statistics.median(times[0]) / statistics.median(times[1]))
            paired.append(statistics.median(a / b for a, b in zip(*times)))
    for name, xs in (("ratio of medians", of_medians), ("median of paired ratios", paired)):
        m = statistics.median(xs)
        worst = max(abs(x - m) / m for x in xs)
        print(f"{name}: median {m:.4f}, sd {statistics.stdev(xs) / m:.2%}, worst check {worst:.1%} off")


if __name__ == "__main__":
    main()
