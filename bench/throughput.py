"""Trial throughput: images per second of prunetune's fine-tuning loop against a plain
PyTorch training loop on the same model, data and device, measured side by side.

prunetune's loop is ``trials.train.train_pass`` (SGD with the schedule, non-finite
checks, bf16 autocast and channels_last on CUDA) over its in-memory ``TensorLoader``
(on-device normalisation and augmentation). The plain loop is the textbook one over
the same loader. Rounds alternate the two; each figure is the median over rounds.
On the CPU here, and on a GPU when one is present (plain loop in fp32 and in bf16 +
channels_last, so the comparison is like for like). Target: prunetune >= 90% of plain.
Results: bench/results/throughput.json and docs/benchmarks.md.
Run: `python -m bench.throughput`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from itertools import islice
from pathlib import Path

import torch
from torch import nn

from bench.report import machine, publish
from trials.data import DataConfig, load_train_val
from trials.models import create_model
from trials.train import FinetuneConfig, make_optimizer, prepare_model, train_pass

ROOT = Path(__file__).resolve().parent.parent


def plain_loop(model: nn.Module, batches, device: torch.device, bf16: bool) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def prunetune_loop(model: nn.Module, batches, device: torch.device, steps: int) -> None:
    cfg = FinetuneConfig(steps=steps, lr=0.01)
    opt, sched = make_optimizer(model, cfg, steps)
    train_pass(model, batches, opt, sched, cfg, device)
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(device: torch.device, steps: int, rounds: int, arch: str, batch: int) -> dict:
    data = DataConfig(name="synthetic", batch_size=batch, synthetic_train=batch * steps)
    splits = load_train_val(data, device)
    base = create_model(arch, num_classes=splits.num_classes, in_channels=splits.in_channels)
    loops = {"prunetune": None, "plain": False}
    if device.type == "cuda":
        loops["plain bf16+channels_last"] = True
    models = {
        k: prepare_model(copy.deepcopy(base), device) if k != "plain" else copy.deepcopy(base).to(device) for k in loops
    }
    rates: dict[str, list[float]] = {k: [] for k in loops}
    for r in range(rounds + 1):  # round 0 warms up
        for name, bf16 in loops.items():
            batches = list(islice(splits.train, steps))
            t0 = time.perf_counter()
            if bf16 is None:
                prunetune_loop(models[name], batches, device, steps)
            else:
                plain_loop(models[name], batches, device, bf16)
            if r:
                rates[name].append(sum(len(y) for _, y in batches) / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in rates.items()}


def section(res: dict) -> str:
    lines = [
        "## Trial throughput against a plain PyTorch loop",
        "",
        f"`python -m bench.throughput` on {res['machine']}, {res['date']}: {res['arch']}, batch {res['batch']}, "
        f"{res['steps']} steps per round, {res['rounds']} rounds alternating the loops (median). Target: >= 90%.",
        "",
        "| device | loop | images/s | vs plain |",
        "|---|---|---|---|",
    ]
    for device, rates in res["devices"].items():
        ref = rates.get("plain bf16+channels_last", rates["plain"])
        for name, v in rates.items():
            lines.append(f"| {device} | {name} | {v:.0f} | {100 * v / ref:.0f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    res = {"devices": {}}
    for d in devices:
        steps = args.steps * (10 if d.type == "cuda" else 1)
        res["devices"][d.type] = run(d, steps, args.rounds, args.arch, args.batch)
        print(d.type, res["devices"][d.type], flush=True)
    res.update(
        machine=machine(),
        date=time.strftime("%Y-%m-%d"),
        arch=args.arch,
        batch=args.batch,
        steps=args.steps,
        rounds=args.rounds,
    )
    text = section(res)
    publish("throughput", res, text)


if __name__ == "__main__":
    main()
