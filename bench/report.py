"""Shared by the benchmarks: name the machine, write a section of a docs page in place."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def network_parser(doc: str, builds: int) -> argparse.ArgumentParser:
    """The options of the latency-table benches: which network, its input, how many builds."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("arch")
    ap.add_argument("--in-channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--builds", type=int, default=builds)
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall", help="latency.clock of every timing")
    return ap


def latency_case(args: argparse.Namespace, repeats: int):
    """For ``network_parser``'s options, on one thread: the latency settings, a builder of
    the pruned network of a spec (None: the whole one), and the network's channel graph."""
    from trials.groups import build_graph
    from trials.latency import LatencySettings
    from trials.prune import rebuild

    torch.manual_seed(0)
    torch.set_num_threads(1)
    settings = LatencySettings(batch_size=args.batch, threads=1, warmup=5, repeats=repeats, clock=args.clock)
    build = lambda spec: rebuild(args.arch, spec, 10, args.in_channels, args.size)  # noqa: E731
    graph = build_graph(build(None), (args.in_channels, args.size, args.size), args.arch)
    return settings, build, graph


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def write_section(doc: Path, key: str, text: str) -> None:
    """Replace the text between ``<!-- KEY:start -->`` and ``<!-- KEY:end -->`` in ``doc``
    (appended with its markers when absent)."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    body = doc.read_text() if doc.exists() else ""
    if start in body and end in body:
        a, b = body.index(start) + len(start), body.index(end)
        body = body[:a] + "\n" + text + "\n" + body[b:]
    else:
        body = body.rstrip() + f"\n\n{start}\n{text}\n{end}\n"
    doc.write_text(body)


ROOT = Path(__file__).resolve().parent.parent


def publish(name: str, results: dict, text: str, doc: str = "benchmarks.md", key: str | None = None) -> None:
    """Save ``results`` as bench/results/NAME.json, put ``text`` in its section of docs/DOC, print it."""
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    write_section(ROOT / "docs" / doc, key or name, text)
    print(text)


def seeds_or_report(args: argparse.Namespace, name: str, run, save, merge, table) -> None:
    """The seeded benches' main: run the seeds (``--seed-range A B``: a share of them, and
    stop there: another process runs the rest), unless ``--report``; then merge the seed
    files and publish."""
    if not args.report:
        seeds = list(range(args.seed_range[0], args.seed_range[1] + 1)) if args.seed_range else list(range(args.seeds))
        results = run(seeds)
        results["machine"], results["date"] = machine(), time.strftime("%Y-%m-%d")
        save(results, seeds)
        if args.seed_range:
            return
    results = merge()
    if not results["seeds"]:
        raise SystemExit(f"no results in bench/results/{name}.seeds-*.json")
    publish(name, results, table(results))


def save_seeds(name: str, results: dict, seeds, tag: str = "") -> None:
    """A seeded bench's results so far, as bench/results/NAME.seeds-A-B[TAG].json."""
    path = ROOT / "bench" / "results" / f"{name}.seeds-{min(seeds)}-{max(seeds)}{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
