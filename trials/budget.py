"""Budget projection (AdaPruner): scale a keep-ratio vector by one factor so that the
pruned network's MACs land on a target.

Bisection runs on an analytic model of conv/linear MACs (each layer's counted MACs
scaled by the kept fractions of its input and output groups), then the result is
checked with the one real counter (``count_cost``) and the target is corrected by
the ratio of the two, so the final spec is judged by the same counter as every report.
Rounding to whole channels makes MACs a step function of the factor (one channel of a
ResNet-56 stage group moves about 2% of its MACs), so single-group steps close the
last gap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch_pruning as tp
from torch import nn

from trials.cost import count_cost
from trials.groups import ChannelGraph, layer_width
from trials.prune import rebuild
from trials.spec import ChannelSpec


class MacsModel:
    """MACs (or, with ``params=True``, parameters) of a spec from the unpruned layer-wise
    counts of one ``ChannelGraph``."""

    def __init__(self, graph: ChannelGraph, params: bool = False) -> None:
        model = graph.model
        _, _, layer_macs, layer_params = tp.utils.count_ops_and_params(model, graph.example_input, layer_wise=True)
        if params:
            layer_macs = layer_params
        modules = dict(model.named_modules())
        self.sizes = {g.name: g.channels for g in graph.groups}
        out_of = {m: g.name for g in graph.groups for m in g.members}
        in_of: dict[str, list[str]] = {}
        for g in graph.groups:
            for c in g.consumers:
                in_of.setdefault(c, []).append(g.name)
        self.terms = []  # (macs, out group or None, in groups, in width)
        self.fixed = 0.0
        for name, m in modules.items():
            macs = float(layer_macs.get(m) or 0.0)
            if not macs or list(m.children()):
                continue
            depthwise = isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
            ins = [] if depthwise else in_of.get(name, [])
            width = getattr(m, "in_channels", None) or getattr(m, "in_features", None) or layer_width(m)
            if name in out_of or ins:
                self.terms.append((macs, out_of.get(name), ins, width))
            else:
                self.fixed += macs

    def __call__(self, channels: Mapping[str, int]) -> float:
        total = self.fixed
        for macs, out, ins, width in self.terms:
            f = channels.get(out, self.sizes[out]) / self.sizes[out] if out else 1.0
            if ins and width:
                cut = sum(self.sizes[g] - channels.get(g, self.sizes[g]) for g in ins)
                f *= (width - cut) / width
            total += macs * f
        return total


def _refine(
    model_cost: MacsModel,
    graph: ChannelGraph,
    spec: ChannelSpec,
    goal: float,
    lo: float,
    hi: float,
    round_to: int,
) -> ChannelSpec:
    """Close the gap the rounding of one global factor leaves: move one group at a time
    by ``round_to`` channels, always the move that brings the MACs closest to ``goal``."""
    channels = {g.name: spec.kept(g) for g in graph.groups}
    bounds = {
        g.name: (max(1, min(g.channels, round(lo * g.channels))), max(1, int(hi * g.channels))) for g in graph.groups
    }
    current = model_cost(channels)
    for _ in range(4 * len(channels)):
        step = round_to if current < goal else -round_to
        best, best_gap = None, abs(current - goal)
        for name, n in channels.items():
            lo_n, hi_n = bounds[name]
            if not lo_n <= n + step <= hi_n:
                continue
            trial = model_cost({**channels, name: n + step})
            if abs(trial - goal) < best_gap:
                best, best_gap = (name, trial), abs(trial - goal)
        if best is None:
            break
        channels[best[0]] += step
        current = best[1]
    return ChannelSpec(channels, spec.arch)


def _scaled(graph: ChannelGraph, ratios: Mapping[str, float], s: float, lo: float, hi: float, round_to: int, arch):
    clipped = {g.name: min(hi, max(lo, s * ratios.get(g.name, 1.0))) for g in graph.groups}
    return ChannelSpec.from_ratios(graph.groups, clipped, round_to, arch)


CORRECTION = 1.3  # the most a round's check may move the model's goal from the target (either way)


def project_ratios(
    graph: ChannelGraph,
    ratios: Mapping[str, float],
    target: float,
    *,
    keep_min: float = 0.05,
    keep_max: float = 1.0,
    round_to: int = 1,
    arch: str | None = None,
    num_classes: int = 10,
    tol: float = 0.01,
    rounds: int = 4,
    cost: Callable[[Mapping[str, int]], float] | None = None,
    real: Callable[[ChannelSpec], float] | None = None,
) -> tuple[ChannelSpec, int]:
    """The spec of ``s * ratios`` (clipped to [keep_min, keep_max]) whose counted MACs are
    closest to ``target``; returns it with its counted MACs. With ``arch`` set, each
    round is checked by counting a rebuilt network; without it, the analytic model decides.

    Another cost works the same way: ``cost`` models it from kept channel counts (bisected
    on) and ``real`` gives its true value for a spec (each round's check, e.g. a measured
    latency); ``target`` is then a target of that cost, and ``tol`` its tolerance."""
    model_cost = cost or MacsModel(graph)
    r = [max(ratios.get(g.name, 1.0), 1e-6) for g in graph.groups]
    s_lo, s_hi = keep_min / max(r) * 0.999, keep_max / min(r) * 1.001
    shape = tuple(graph.example_input.shape[1:])
    goal, best, checked = target, None, []
    for _ in range(rounds):
        lo, hi = s_lo, s_hi
        for _ in range(50):
            mid = (lo + hi) / 2
            if model_cost(_scaled(graph, ratios, mid, keep_min, keep_max, round_to, arch).channels) < goal:
                lo = mid
            else:
                hi = mid
        cands = [_scaled(graph, ratios, s, keep_min, keep_max, round_to, arch) for s in (lo, hi)]
        spec = min(cands, key=lambda c: abs(model_cost(c.channels) - goal))
        spec = _refine(model_cost, graph, spec, goal, keep_min, keep_max, round_to)
        if real is not None:
            value = real(spec)
        elif arch:
            value = count_cost(rebuild(arch, spec, num_classes, shape[0], shape[-1]), shape).macs
        else:
            value = model_cost(spec.channels)
        checked.append((spec, value))
        if best is None or abs(value - target) < abs(best[1] - target):
            best = (spec, value if real is not None else int(value))
        if abs(value - target) <= tol * target:
            return best
        # correct for what the model leaves out, never past CORRECTION of the target: one
        # noisy measurement must not walk the goal up to the unpruned network
        goal = min(max(goal * target / value, target / CORRECTION), target * CORRECTION)
    if real is not None:
        end = lambda low: _scaled(graph, ratios, s_lo if low else s_hi, keep_min, keep_max, round_to, arch)  # noqa: E731
        best = _bisect_measured(graph, checked, end, best, target, tol, round_to, real)
    return best


def _path(graph: ChannelGraph, a: ChannelSpec, b: ChannelSpec, round_to: int) -> list[dict[str, int]]:
    """Channel counts from ``a`` to ``b`` one step of ``round_to`` in one group at a time,
    the groups interleaved so that the path follows the straight line between the two."""
    start = {g.name: a.kept(g) for g in graph.groups}
    end = {g.name: b.kept(g) for g in graph.groups}
    steps = {n: -(-abs(end[n] - start[n]) // round_to) for n in start}
    done = dict.fromkeys(start, 0)
    current, path = dict(start), [dict(start)]
    for _ in range(sum(steps.values())):
        name = min((n for n in start if done[n] < steps[n]), key=lambda n: ((done[n] + 0.5) / steps[n], n))
        done[name] += 1
        move = min(round_to, abs(end[name] - current[name]))
        current[name] += move if end[name] > start[name] else -move
        path.append(dict(current))
    return path


BISECT_CHECKS = 8  # the most measured checks the bracket bisection adds


def _bisect_measured(graph, checked, end, best, target: float, tol: float, round_to: int, real) -> tuple:
    """When the model-guided rounds miss, bisect by measurement between the closest checked
    spec under the target and the closest over it, one group step at a time. A real cost
    can move in steps the model does not see (measured on this CPU: ResNet-20 at 16x16
    is 0.58x the whole network's latency with 16 channels in stage 2 and 0.68x with 17,
    flat up to 32, since the kernels work in blocks of channels); scaling one factor then
    jumps over the target whichever way the goal is corrected, and only a path that moves
    one group at a time has points between the two sides. Where every check fell on one
    side, the end of the range on the other side (every group at ``keep_min``, or at
    ``keep_max``) is measured as the bracket's other end; if it is on the same side too,
    the target is out of reach and the closest check stands."""
    under = [c for c in checked if c[1] < target]
    over = [c for c in checked if c[1] > target]
    if not under or not over:
        far = end(low=not under)  # the end of the range on the side no check reached
        value = real(far)
        (under if value < target else over).append((far, value))
        if not under or not over:  # out of reach, or a check that reads wrong: the rounds' best stands
            return best
        if abs(value - target) < abs(best[1] - target):
            best = (far, value)
        if abs(value - target) <= tol * target:
            return best
    lo = max(under, key=lambda c: c[1])
    hi = min(over, key=lambda c: c[1])
    path = _path(graph, lo[0], hi[0], max(1, round_to))
    i, j = 0, len(path) - 1  # the value at i is under the target, at j over it
    for _ in range(BISECT_CHECKS):
        if j - i <= 1:
            break
        mid = (i + j) // 2
        spec = ChannelSpec(path[mid], lo[0].arch)
        value = real(spec)
        if abs(value - target) < abs(best[1] - target):
            best = (spec, value)
        if abs(value - target) <= tol * target:
            break
        i, j = (mid, j) if value < target else (i, mid)
    return best
