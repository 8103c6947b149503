"""AdaPruner: counts from BN importance under a MACs budget, and adaptive weight inheritance.

- ``group_importance``: a group's importance is the mean |gamma| over its BN layers
  (groups without BN fall back to the mean l1 norm of their filters, scaled to the BN
  groups' range).
- ``allocate``: keep ratios proportional to importance (the most important group keeps
  ``keep_max``), scaled by one global factor found by bisection so that the counted MACs
  of the pruned network meet the target within 1% (``trials.budget.project_ratios``).
- ``choose_criterion`` (``criterion: auto``): for one spec, prune with every candidate
  criterion, recalibrate BN on a few training batches, score on a few validation
  batches, and keep the best.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from itertools import islice

import torch
from torch import nn

from trials.budget import project_ratios
from trials.criteria import AUTO_CANDIDATES, CRITERIA
from trials.errors import UserError
from trials.groups import ChannelGraph, build_graph
from trials.spec import ChannelSpec
from trials.train import evaluate, recalibrate_bn

_BN = nn.modules.batchnorm._BatchNorm


def group_importance(graph: ChannelGraph) -> dict[str, float]:
    """Mean BN scaling factor |gamma| of each group (AdaPruner's block importance)."""
    modules = dict(graph.model.named_modules())
    bn, other = {}, {}
    for g in graph.groups:
        gammas = [
            modules[m].weight.detach().abs().float().mean().item()
            for m in g.members
            if isinstance(modules[m], _BN) and modules[m].affine
        ]
        if gammas:
            bn[g.name] = sum(gammas) / len(gammas)
        else:
            w = [
                modules[m].weight.detach().abs().flatten(1).sum(1).mean().item()
                for m in g.members
                if hasattr(modules[m], "weight") and modules[m].weight.ndim > 1
            ]
            other[g.name] = sum(w) / len(w) if w else 1.0
    if other:  # put BN-less groups on the BN groups' scale
        ref = max(bn.values()) if bn else 1.0
        top = max(other.values()) or 1.0
        bn.update({k: ref * v / top for k, v in other.items()})
    return bn


def importance_ratios(importance: dict[str, float], keep_max: float = 1.0) -> dict[str, float]:
    top = max(importance.values())
    if top <= 0:
        raise UserError("adapruner: every group has zero importance (all BN scales are zero)")
    return {k: keep_max * max(v, 1e-6) / top for k, v in importance.items()}


def allocate(graph: ChannelGraph, target_macs: float, *, keep_max: float = 1.0, **kw) -> tuple[ChannelSpec, int]:
    """AdaPruner's allocation: the spec whose counted MACs meet ``target_macs``, with its
    MACs. ``kw`` goes to ``project_ratios`` (keep_min, round_to, arch, num_classes)."""
    ratios = importance_ratios(group_importance(graph), keep_max)
    return project_ratios(graph, ratios, target_macs, keep_max=keep_max, **kw)


def choose_criterion(
    model: nn.Module,
    input_shape: tuple[int, ...],
    spec: ChannelSpec,
    train: Iterable,
    val: Iterable,
    device: torch.device,
    *,
    candidates: Sequence[str] = AUTO_CANDIDATES,
    batches: int = 4,
    taylor_batches: int = 4,
    seed: int = 0,
    learned: dict | None = None,
) -> tuple[str, dict[str, float]]:
    """Adaptive weight inheritance: the candidate whose pruned network scores best after
    BN recalibration on ``batches`` training batches, judged on ``batches`` validation
    batches. Returns the winner and every candidate's accuracy (ties go to the earlier
    candidate)."""
    from trials.prune import apply_spec  # local: prune imports criteria

    unknown = [c for c in candidates if c not in CRITERIA]
    if unknown or not candidates:
        raise UserError(f"criterion auto: unknown candidates {unknown}; use some of {', '.join(CRITERIA)}")
    train_b = [(x, y) for x, y in islice(train, max(batches, taylor_batches))]
    val_b = [(x, y) for x, y in islice(val, batches)]
    if not train_b or not val_b:
        raise UserError("criterion auto needs training and validation batches")
    scores: dict[str, float] = {}
    for name in candidates:
        cand = copy.deepcopy(model).cpu()
        graph = build_graph(cand, input_shape)
        tb = [(x.cpu(), y.cpu()) for x, y in train_b[:taylor_batches]] if name == "taylor" else None
        apply_spec(graph, spec, name, batches=tb, seed=seed, learned=learned)
        del graph
        recalibrate_bn(cand, train_b, batches, device)
        m = evaluate(cand, val_b, device)
        scores[name] = m["accuracy"] - 1e-6 * m["loss"]  # accuracy first, loss breaks ties
    best = max(candidates, key=lambda c: (round(scores[c], 9), -candidates.index(c)))
    return best, {k: round(v, 6) for k, v in scores.items()}
