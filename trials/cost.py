"""Cost of a network: MACs and parameters counted on the network itself, and latency.

One counter everywhere (torch-pruning's ``count_ops_and_params``, which counts
multiply-accumulates, not 2 x MACs), so that budgets and reports agree.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int


def count_cost(model: nn.Module, input_shape: tuple[int, int, int]) -> Cost:
    """MACs and parameters of one forward pass on a single input of ``input_shape``."""
    device = next(model.parameters()).device
    was_training = model.training
    x = torch.zeros(1, *input_shape, device=device)
    macs, params = tp.utils.count_ops_and_params(model, x)
    model.train(was_training)
    return Cost(macs=int(macs), params=int(params))


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int = 64,
    device: torch.device | str | None = None,
    warmup: int = 5,
    repeats: int = 20,
) -> float:
    """Median wall time in milliseconds of one forward pass of a batch (eval mode)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, *input_shape, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        model(x)
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000.0)
    model.train(was_training)
    return statistics.median(times)
