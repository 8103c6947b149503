"""Filter criteria: which channels of a group to keep.

A criterion scores every channel of a group; the highest scores are kept. Scores are
torch-pruning's group importances (aggregated over every coupled layer):
``l1`` and ``l2`` (filter norms), ``bn_scale`` (|gamma| of the group's BN layers, the
network-slimming criterion; groups without BN fall back to ``l1``), ``taylor`` (first
order Taylor, Molchanov et al. 2019, from gradients of a few training batches),
``random`` (a seeded control), ``dafp`` (dependency-aware: a channel's BN scales times
the norms of the next layers' weights that consume it) and ``paam`` (scores learned
by PAAM training, stored with the baseline). ``auto`` (AdaPruner's adaptive weight
inheritance) is resolved per trial by ``trials.adapruner.choose_criterion``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch_pruning as tp
from torch import nn

from trials.errors import UserError
from trials.groups import ChannelGraph

CRITERIA = ("l1", "l2", "bn_scale", "taylor", "random", "dafp", "paam")
AUTO_CANDIDATES = ("l1", "l2", "bn_scale", "taylor", "random")  # what ``auto`` chooses among
_BN = nn.modules.batchnorm._BatchNorm


def dafp_importance(group: tp.dependency.Group) -> torch.Tensor | None:
    """DAFP: sum over the group's BN layers of |gamma| (the l1 norm of the producing
    filters when the group has no BN) times the sum over its consuming layers of the
    l2 norm of the input-channel slices that read each channel."""
    n = len(group[0].root_idxs)
    scale, use = torch.zeros(n), torch.zeros(n)
    conv_scale = torch.zeros(n)
    has_bn = has_next = False
    for i, (dep, idxs) in enumerate(group):
        layer, fn, roots = dep.layer, dep.pruning_fn, group[i].root_idxs
        if roots is None or any(r is None for r in roots):
            continue
        roots = torch.tensor(roots)
        if fn == tp.prune_batchnorm_out_channels and isinstance(layer, _BN) and layer.affine:
            scale.scatter_add_(0, roots, layer.weight.detach()[idxs].abs().float().cpu())
            has_bn = True
        elif fn in (tp.prune_conv_out_channels, tp.prune_linear_out_channels):
            w = layer.weight.detach()[idxs].flatten(1).abs().sum(1).float().cpu()
            conv_scale.scatter_add_(0, roots, w)
        elif fn in (tp.prune_conv_in_channels, tp.prune_linear_in_channels):
            w = layer.weight.detach().transpose(0, 1).flatten(1)
            if fn == tp.prune_conv_in_channels and layer.groups not in (1, layer.in_channels):
                w = w.repeat(layer.groups, 1)
            use.scatter_add_(0, roots, w[idxs].norm(dim=1).float().cpu())
            has_next = True
    first = scale if has_bn else conv_scale
    if not has_next:
        return first
    return first * use


def _importance(criterion: str) -> tp.importance.Importance:
    if criterion == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if criterion == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if criterion == "bn_scale":
        return tp.importance.BNScaleImportance()
    if criterion == "taylor":
        return tp.importance.GroupTaylorImportance()
    if criterion == "dafp":
        return dafp_importance
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
    learned: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Scores per channel for each named group (higher = more important).

    ``learned`` holds the PAAM scores (group name -> per-channel scores) that the
    criterion ``paam`` reads; a group without learned scores falls back to ``l1``.
    """
    names = list(names)
    if criterion not in CRITERIA:
        raise UserError(f"criterion '{criterion}' is unknown: use one of {', '.join(CRITERIA)}")
    if criterion == "paam":
        if not learned:
            raise UserError(
                "criterion 'paam' needs learned filter scores: train the baseline with baseline.regularizer: paam"
            )
        sizes = graph.by_name()
        out = score_groups(graph, "l1", [n for n in names if n not in learned])
        for n in names:
            if n in learned:
                s = torch.as_tensor(learned[n]).float().flatten()
                if len(s) != sizes[n].channels:
                    raise UserError(f"paam scores of group '{n}' have {len(s)} entries, the group {sizes[n].channels}")
                out[n] = s
        return out
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
