"""Channel groups, read off the model's dependency graph (torch-pruning).

A channel group is a set of layers whose output channels must be cut together: a
conv and its BN, or every conv that feeds one residual sum. Groups come from
``tp.DependencyGraph``, never from per-architecture tables. The classifier's outputs
and the network input are never pruned.

Each group is named after its lead layer: the first module, in ``named_modules``
order, whose output channels belong to it. Names are therefore stable for a given
architecture, and a spec (group name -> kept channels) rebuilds the same network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from trials.errors import UserError

# Families torch-pruning cannot cut correctly (channel shuffle) or that are not CNNs.
UNSUPPORTED_PREFIXES = ("shufflenet", "vit_", "swin_", "maxvit")
_PRUNABLE = (nn.Conv2d, nn.Conv1d, nn.Linear)


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable group: a stable name, its channel count and its member layers."""

    name: str
    channels: int
    members: tuple[str, ...]  # layers whose output channels are cut (conv, linear, norm)
    consumers: tuple[str, ...]  # layers whose input channels are cut
    stage: int  # index of the feature-map resolution the group lives at (0 = largest)


@dataclass
class ChannelGraph:
    """A model, its dependency graph and its channel groups, in network order."""

    model: nn.Module
    dg: tp.DependencyGraph
    groups: list[ChannelGroup]
    example_input: torch.Tensor
    _roots: dict[str, tuple[nn.Module, object]] = field(default_factory=dict, repr=False)

    def by_name(self) -> dict[str, ChannelGroup]:
        return {g.name: g for g in self.groups}

    def tp_group(self, name: str, idxs: list[int] | None = None) -> tp.dependency.Group:
        """The torch-pruning group of ``name`` over ``idxs`` (all channels if None)."""
        module, handler = self._roots[name]
        if idxs is None:
            idxs = list(range(self.by_name()[name].channels))
        return self.dg.get_pruning_group(module, handler, idxs)

    def remove(self, name: str, idxs: list[int]) -> None:
        """Cut the channels ``idxs`` of group ``name`` from every coupled layer."""
        if idxs:
            self.tp_group(name, sorted(idxs)).prune()


def layer_width(module: nn.Module) -> int | None:
    """Output channels of a layer, or None for a layer without a width."""
    for attr in ("out_channels", "out_features", "num_features"):
        if hasattr(module, attr):
            return getattr(module, attr)
    return None


def check_prunable(arch: str) -> None:
    """Refuse, at once, an architecture that is unknown or that prunetune cannot cut
    (before any data is read or baseline trained)."""
    from trials.models import create_model

    _check_supported(create_model(arch), arch)


def _check_supported(model: nn.Module, arch: str | None) -> None:
    short = (arch or "").split("/")[-1]
    if short.startswith(UNSUPPORTED_PREFIXES) or any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        raise UserError(
            f"model '{arch or type(model).__name__}' cannot be channel-pruned by prunetune: "
            "channel shuffles and attention layers are not supported (see README, Limits)"
        )


def _trace_shapes(model: nn.Module, x: torch.Tensor) -> tuple[dict[nn.Module, tuple], nn.Module | None]:
    """Output shape of every leaf module, and the last conv/linear run (the classifier)."""
    shapes: dict[nn.Module, tuple] = {}
    order: list[nn.Module] = []

    def hook(mod: nn.Module, _inp: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            shapes[mod] = tuple(out.shape)
        if isinstance(mod, _PRUNABLE):
            order.append(mod)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes, (order[-1] if order else None)


def build_graph(model: nn.Module, input_shape: tuple[int, ...], arch: str | None = None) -> ChannelGraph:
    """Trace ``model`` on a zero input of ``input_shape`` (C, H, W) and list its groups."""
    _check_supported(model, arch)
    was_training = model.training
    model.eval()  # tracing must not touch BN running statistics
    device = next(model.parameters()).device
    x = torch.zeros(1, *input_shape, device=device)
    try:
        shapes, classifier = _trace_shapes(model, x)
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is a model we cannot handle
        raise UserError(f"model '{arch or type(model).__name__}' cannot be traced: {exc}") from exc
    finally:
        model.train(was_training)

    names = {m: n for n, m in model.named_modules()}
    rank = {m: i for i, m in enumerate(model.modules())}
    sides = sorted({s[-1] for m, s in shapes.items() if len(s) == 4}, reverse=True)
    ignored = [classifier] if classifier is not None else []
    graph = ChannelGraph(model=model, dg=dg, groups=[], example_input=x)
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=_PRUNABLE):
        outs, ins = [], []
        for item in group:
            mod, fn = item.dep.target.module, item.dep.handler
            if not isinstance(mod, nn.Module) or mod not in names:
                continue
            if dg.is_out_channel_pruning_fn(fn) and not isinstance(mod, (nn.ReLU, nn.Identity)):
                outs.append(mod)
            elif dg.is_in_channel_pruning_fn(fn) and isinstance(mod, _PRUNABLE):
                ins.append(mod)
        lead = min((m for m in outs if isinstance(m, _PRUNABLE)), key=rank.__getitem__)
        shape = shapes.get(lead, ())
        stage = sides.index(shape[-1]) if len(shape) == 4 else len(sides)
        name = names[lead]
        channels = len(group[0].idxs)
        # A norm layer over a concatenation holds this group's channels among others':
        # it is cut, but it is a consumer of the group, not a member of it.
        whole = {m for m in outs if layer_width(m) in (None, channels)}
        members = tuple(names[m] for m in sorted(whole, key=rank.__getitem__))
        consumers = tuple(names[m] for m in sorted(set(ins) | set(outs) - whole, key=rank.__getitem__))
        graph.groups.append(ChannelGroup(name, channels, members, consumers, stage))
        graph._roots[name] = (group[0].dep.target.module, group[0].dep.handler)
    graph.groups.sort(key=lambda g: rank[graph._roots[g.name][0]])
    if not graph.groups:
        raise UserError(f"model '{arch or type(model).__name__}' has no prunable channel groups")
    return graph
