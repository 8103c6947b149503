"""Cost of a network: MACs and parameters counted on the network itself, and latency.

One counter everywhere (torch-pruning's ``count_ops_and_params``, which counts
multiply-accumulates, not 2 x MACs), so that budgets and reports agree.
"""

from __future__ import annotations

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


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int = 64,
    device: torch.device | str | None = None,
    *,
    warmup: int = 5,
    repeats: int = 20,
) -> float:
    """Median wall time in milliseconds of one forward pass of a batch on the torch runtime
    (eval mode; on CUDA channels_last and bf16, as trials run): ``trials.latency.measure``."""
    from trials.latency import LatencySettings, measure

    device = str(device if device is not None else next(model.parameters()).device)
    return measure(model, input_shape, LatencySettings("torch", device, batch_size, None, warmup, repeats)).median_ms
