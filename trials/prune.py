"""Cut a network to a spec: exact per-group counts, highest-ranked filters kept.

``prune`` changes the model in place (and returns it). ``rebuild`` cuts a fresh
network of an architecture to a spec's shape, so that a pruned state_dict loads into
it with ``load_state_dict`` and no pickled module is ever needed.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from trials.criteria import score_groups
from trials.errors import UserError
from trials.groups import ChannelGraph, build_graph, layer_width
from trials.models import create_model, default_input_size
from trials.spec import ChannelSpec


def infer_input_shape(model: nn.Module, side: int = 32) -> tuple[int, int, int]:
    """(C, side, side), with C read from the first convolution of ``model``."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return (m.in_channels, side, side)
    raise UserError(f"model {type(model).__name__} has no Conv2d: prunetune prunes CNNs")


def apply_spec(
    graph: ChannelGraph,
    spec: ChannelSpec,
    criterion: str = "l1",
    *,
    batches: Iterable | None = None,
    seed: int = 0,
    learned: dict | None = None,
) -> nn.Module:
    """Prune the graph's model to ``spec`` and check every group holds its count.

    ``learned`` (group -> scores) feeds the ``paam`` criterion."""
    spec.validate(graph.groups)
    cut = [g for g in graph.groups if spec.kept(g) < g.channels]
    if criterion == "first":  # keep channels 0..k-1: only the shape matters (rebuild)
        scores = {g.name: -torch.arange(g.channels, dtype=torch.float) for g in cut}
    else:
        scores = score_groups(graph, criterion, [g.name for g in cut], batches=batches, seed=seed, learned=learned)
    for g in cut:
        order = torch.argsort(scores[g.name], descending=True, stable=True)
        graph.remove(g.name, order[spec.kept(g) :].tolist())
    modules = dict(graph.model.named_modules())
    for g in graph.groups:
        for member in g.members:
            n = layer_width(modules[member])
            if n is not None and n != spec.kept(g):
                raise UserError(f"group '{g.name}': layer '{member}' kept {n} channels, expected {spec.kept(g)}")
    try:
        with torch.no_grad():
            graph.model.eval()(graph.example_input)
    except RuntimeError as exc:
        raise UserError(f"the pruned network does not run ({exc}); this model is not supported") from exc
    return graph.model


def prune(
    model: nn.Module,
    spec: ChannelSpec,
    criterion: str = "l1",
    *,
    input_shape: tuple[int, int, int] | None = None,
    arch: str | None = None,
    batches: Iterable | None = None,
    seed: int = 0,
    learned: dict | None = None,
) -> nn.Module:
    """Prune ``model`` in place to ``spec``, keeping the filters ``criterion`` ranks highest.

    ``batches`` (an iterable of (x, y)) feeds the ``taylor`` criterion. The model's
    train/eval mode is preserved.
    """
    was_training = model.training
    graph = build_graph(model, input_shape or infer_input_shape(model), arch or spec.arch)
    apply_spec(graph, spec, criterion, batches=batches, seed=seed, learned=learned)
    return model.train(was_training)


def rebuild(
    arch: str,
    spec: ChannelSpec | None,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int | None = None,
) -> nn.Module:
    """A fresh ``arch`` cut to the shape of ``spec``: ready for a pruned state_dict."""
    model = create_model(arch, num_classes=num_classes, in_channels=in_channels)
    if spec is None or not spec.channels:
        return model
    side = input_size or default_input_size(arch)
    return prune(model, spec, "first", input_shape=(in_channels, side, side), arch=arch)
