"""Do MACs cuts turn into real speed? Latency of pruned networks against their baseline.

ResNet-56 (CIFAR, 32x32) and torchvision ResNet-50 (224x224) at 50% MACs cut: uniform
(every group keeps the same share), per-layer (AdaPruner's BN-importance allocation) and,
for ResNet-56, searched (the keep shares of the configuration prunetune's TPE search chose
at a 50% cut in bench/search_quality.py, ResNet-56 on the digits data, scaled onto 50% of
the CIFAR network's MACs; without CIFAR or ImageNet here no search on the real tasks can
run), each with ``round_to`` 1 and 8. Forward latency at batch 1 and
64, eval mode, measured side by side: the variants are timed in interleaved rounds and
each figure is the median over rounds, reported as baseline time / variant time next to
baseline MACs / variant MACs. On the CPU here; on a GPU too when one is present.
Results: bench/results/speedup.json and docs/benchmarks.md. Run: `python -m bench.speedup`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from bench.report import machine, publish
from trials.adapruner import allocate
from trials.budget import project_ratios
from trials.cost import count_cost, measure_latency
from trials.groups import build_graph
from trials.models import create_model
from trials.prune import apply_spec
from trials.spec import ChannelSpec

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = {"resnet56": 32, "torchvision/resnet50": 224}


def _bn_like_trained(model: nn.Module, seed: int = 0) -> None:
    """Give BN scales the spread of a trained network, so AdaPruner's importance differs by group."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = (0.2 + torch.rand(1, generator=g)) * (0.5 + torch.rand(m.num_features, generator=g))


def searched_spec() -> ChannelSpec | None:
    """The counts prunetune's TPE search chose at a 50% cut (seed 0) in bench.search_quality."""
    path = ROOT / "bench" / "results" / "search_quality.json"
    if not path.is_file():
        return None
    seeds = json.loads(path.read_text())["seeds"]
    return ChannelSpec.from_dict(seeds[0]["budget"]["0.50"]["tpe"]["spec"])


def variants(arch: str, side: int) -> dict[str, tuple[nn.Module, int]]:
    shape = (3, side, side)
    base = create_model(arch, num_classes=1000 if arch.startswith("torchvision") else 10).eval()
    _bn_like_trained(base)
    base_macs = count_cost(base, shape).macs
    out = {"baseline": (base, base_macs)}
    searched = searched_spec() if arch == "resnet56" else None
    for alloc in ("uniform", "per-layer") + (("searched",) if searched else ()):
        for round_to in (1, 8):
            import copy

            model = copy.deepcopy(base)
            graph = build_graph(model, shape, arch)
            kw = {
                "keep_min": 0.1,
                "round_to": round_to,
                "arch": arch,
                "num_classes": 1000 if arch.startswith("torchvision") else 10,
            }
            if alloc == "uniform":
                spec, _ = project_ratios(graph, {g.name: 1.0 for g in graph.groups}, 0.5 * base_macs, **kw)
            elif alloc == "searched":
                spec, _ = project_ratios(graph, searched.ratios(graph.groups), 0.5 * base_macs, **kw)
            else:
                spec, _ = allocate(graph, 0.5 * base_macs, **kw)
            apply_spec(graph, spec, "l1")
            del graph
            model = copy.deepcopy(model).eval()
            out[f"{alloc}, round_to {round_to}"] = (model, count_cost(model, shape).macs)
    return out


def measure(models: dict, side: int, batch: int, device: torch.device, rounds: int) -> dict[str, float]:
    """Median over ``rounds`` of each variant's latency, the variants interleaved in every round."""
    times: dict[str, list[float]] = {k: [] for k in models}
    reps = 3 if batch > 1 and side > 64 and device.type == "cpu" else 10
    for m, _ in models.values():
        m.to(device)
    for _ in range(rounds):
        for name, (m, _) in models.items():
            times[name].append(measure_latency(m, (3, side, side), batch, device, warmup=1, repeats=reps))
    return {k: statistics.median(v) for k, v in times.items()}


def run(rounds: int, say=print) -> dict:
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    res: dict = {}
    for arch, side in NETWORKS.items():
        models = variants(arch, side)
        for device in devices:
            for batch in (1, 64):
                t0 = time.perf_counter()
                lat = measure(models, side, batch, device, rounds)
                base_t, base_m = lat["baseline"], models["baseline"][1]
                for name, (_, macs) in models.items():
                    row = {"latency_ms": lat[name], "speedup": base_t / lat[name], "macs_ratio": base_m / macs}
                    res.setdefault(arch, {}).setdefault(device.type, {}).setdefault(str(batch), {})[name] = row
                say(
                    f"{arch} {device.type} batch {batch}: {', '.join(f'{k} {v:.1f} ms' for k, v in lat.items())} ({time.perf_counter() - t0:.0f} s)"
                )
    return res


def section(res: dict) -> str:
    lines = [
        "## Real speed-up of MACs cuts",
        "",
        f"`python -m bench.speedup` on {res['machine']}, {res['date']}, {res['rounds']} interleaved rounds. "
        "50% MACs cut; uniform = one keep share everywhere, per-layer = AdaPruner's BN-importance allocation "
        "(BN scales given a trained-like spread), searched (ResNet-56 only) = the shares prunetune's TPE search "
        "chose at a 50% cut on the digits data (bench.search_quality, seed 0), scaled onto this network's 50% "
        "MACs; the datasets needed to search these networks on their own tasks are not on this machine. Speed-up = baseline latency / pruned latency, "
        "measured side by side; MACs ratio = baseline MACs / pruned MACs.",
        "",
        "| network | device | batch | variant | latency (ms) | speed-up | MACs ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for arch in NETWORKS:
        for device, by_batch in res[arch].items():
            for batch, rows in by_batch.items():
                for name, r in rows.items():
                    lines.append(
                        f"| {arch} | {device} | {batch} | {name} | {r['latency_ms']:.1f} | {r['speedup']:.2f}x | {r['macs_ratio']:.2f}x |"
                    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    res = run(args.rounds)
    res.update(machine=machine(), date=time.strftime("%Y-%m-%d"), rounds=args.rounds)
    text = section(res)
    publish("speedup", res, text)


if __name__ == "__main__":
    main()
