"""Filter criteria: which channels of a group to keep.

A criterion scores every channel of a group; the highest scores are kept. Scores are
torch-pruning's group importances (aggregated over every coupled layer):
``l1`` and ``l2`` (filter norms), ``bn_scale`` (|gamma| of the group's BN layers, the
network-slimming criterion; groups without BN fall back to ``l1``), ``taylor`` (first
order Taylor, Molchanov et al. 2019, from gradients of a few training batches) and
``random`` (a seeded control).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch_pruning as tp
from torch import nn

from trials.errors import UserError
from trials.groups import ChannelGraph

CRITERIA = ("l1", "l2", "bn_scale", "taylor", "random")


def _importance(criterion: str) -> tp.importance.Importance:
    if criterion == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if criterion == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if criterion == "bn_scale":
        return tp.importance.BNScaleImportance()
    if criterion == "taylor":
        return tp.importance.GroupTaylorImportance()
    raise UserError(f"criterion '{criterion}' is unknown: use one of {', '.join(CRITERIA)}")


def accumulate_gradients(model: nn.Module, batches: Iterable, device: torch.device) -> int:
    """Sum the loss gradients of ``batches`` into ``.grad`` (eval mode: BN stats untouched)."""
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    n = 0
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        loss.backward()
        n += 1
    model.train(was_training)
    return n


def score_groups(
    graph: ChannelGraph,
    criterion: str,
    names: Iterable[str],
    *,
    batches: Iterable | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Scores per channel for each named group (higher = more important)."""
    names = list(names)
    if criterion not in CRITERIA:
        raise UserError(f"criterion '{criterion}' is unknown: use one of {', '.join(CRITERIA)}")
    if criterion == "random":
        gen = torch.Generator().manual_seed(seed)
        sizes = graph.by_name()
        return {n: torch.rand(sizes[n].channels, generator=gen) for n in names}
    if criterion == "taylor":
        if batches is None:
            raise UserError("criterion 'taylor' needs training batches to compute gradients")
        device = next(graph.model.parameters()).device
        if accumulate_gradients(graph.model, batches, device) == 0:
            raise UserError("criterion 'taylor' got no training batches")
    imp, fallback = _importance(criterion), _importance("l1")
    scores = {}
    with torch.no_grad():
        for n in names:
            group = graph.tp_group(n)
            s = imp(group)
            if s is None:  # no layer of the kind the criterion reads (bn_scale without BN)
                s = fallback(group)
            scores[n] = torch.nan_to_num(s.detach().float().cpu(), nan=0.0)
    if criterion == "taylor":
        graph.model.zero_grad(set_to_none=True)
    return scores
