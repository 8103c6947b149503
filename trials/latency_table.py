"""The latency model: a NetAdapt/HALP-style lookup table.

``LatencyTable``: every conv and linear layer is timed alone over a grid of kept input
and output channel counts (layers of one shape share a table), and a network's latency is
predicted as the sum over its layers, plus the rest (BN, activations, additions, pooling,
the framework's own time: measured once on the whole network and scaled by the share of
activations kept), calibrated on a few random pruned networks. Trials then need not all
be timed, and budget mode can bisect on it before verifying by measurement.
"""

from __future__ import annotations

import copy
import random
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

from trials.groups import ChannelGraph, layer_width
from trials.latency import LatencySettings, check_runtime, measure, measure_side_by_side, onnx_bytes
from trials.spec import ChannelSpec


def levels(n: int, count: int) -> list[int]:
    """``count`` channel counts from about n/count to n, distinct, ascending."""
    return sorted({max(1, round(n * k / count)) for k in range(1, count + 1)})


def _interp(xs: list[int], x: float) -> tuple[int, int, float]:
    """Bracketing indices of ``x`` in ``xs`` and the weight of the upper one (clamped)."""
    if x <= xs[0]:
        return 0, 0, 0.0
    if x >= xs[-1]:
        return len(xs) - 1, len(xs) - 1, 0.0
    hi = next(i for i, v in enumerate(xs) if v >= x)
    lo = hi - 1
    return lo, hi, (x - xs[lo]) / (xs[hi] - xs[lo])


@dataclass
class _Layer:
    name: str
    shape: str  # the key of its table
    out_group: str | None
    in_groups: list[str]
    in_width: int
    out_width: int
    out_numel: int  # activations it writes, unpruned
    depthwise: bool = False  # its input count is its output group's


def _layer_shape(m: nn.Module, x: torch.Tensor) -> dict | None:
    if isinstance(m, nn.Conv2d):
        depthwise = m.groups > 1 and m.groups == m.in_channels
        if m.groups > 1 and not depthwise:
            return None  # grouped (not depthwise) convs stay in the rest
        return {
            "kind": "dwconv" if depthwise else "conv",
            "kernel": list(m.kernel_size),
            "stride": list(m.stride),
            "padding": list(m.padding) if not isinstance(m.padding, str) else m.padding,
            "dilation": list(m.dilation),
            "bias": m.bias is not None,
            "hw": list(x.shape[2:]),
        }
    if isinstance(m, nn.Linear):
        return {"kind": "linear", "bias": m.bias is not None, "lead": list(x.shape[1:-1])}
    return None


def _make_layer(shape: dict, cin: int, cout: int) -> tuple[nn.Module, tuple[int, ...]]:
    if shape["kind"] == "linear":
        return nn.Linear(cin, cout, bias=shape["bias"]), (*shape["lead"], cin)
    groups = cin if shape["kind"] == "dwconv" else 1
    if shape["kind"] == "dwconv":
        cout = cin
    conv = nn.Conv2d(
        cin,
        cout,
        tuple(shape["kernel"]),
        tuple(shape["stride"]),
        shape["padding"] if isinstance(shape["padding"], str) else tuple(shape["padding"]),
        tuple(shape["dilation"]),
        groups=groups,
        bias=shape["bias"],
    )
    return conv, (cin, *shape["hw"])


class LatencyTable:
    """Per-layer latency over kept channel counts; ``predict(channels)`` sums it."""

    def __init__(
        self,
        settings: LatencySettings,
        layers: list[_Layer],
        tables: dict,
        sizes: dict,
        rest_ms: float,
        fit: list[float] | None = None,
    ):
        self.settings, self.layers, self.tables, self.sizes, self.rest_ms = settings, layers, tables, sizes, rest_ms
        self.fit = fit  # [a, b, c]: ms = a * layers + b * kept activation share + c (calibrated)
        self.calibration: dict | None = None  # the points ``fit`` was fitted to (not stored: a build's own)
        self.full_numel = sum(layer.out_numel for layer in layers) or 1

    def _kept(self, layer: _Layer, channels: Mapping[str, int]) -> tuple[float, float]:
        cout = channels.get(layer.out_group, self.sizes[layer.out_group]) if layer.out_group else layer.out_width
        if layer.depthwise:
            return cout, cout
        cut = sum(self.sizes[g] - channels.get(g, self.sizes[g]) for g in layer.in_groups)
        return layer.in_width - cut, cout

    def layer_ms(self, layer: _Layer, cin: float, cout: float) -> float:
        t = self.tables[layer.shape]
        i0, i1, wi = _interp(t["cin"], cin)
        o0, o1, wo = _interp(t["cout"], cout)
        ms = t["ms"]
        top = ms[i0][o0] * (1 - wo) + ms[i0][o1] * wo
        bottom = ms[i1][o0] * (1 - wo) + ms[i1][o1] * wo
        return top * (1 - wi) + bottom * wi

    def parts(self, channels: Mapping[str, int]) -> tuple[float, float]:
        """The summed layer times (ms) and the share of activations kept."""
        total, numel = 0.0, 0.0
        for layer in self.layers:
            cin, cout = self._kept(layer, channels)
            total += self.layer_ms(layer, cin, cout)
            numel += layer.out_numel * cout / layer.out_width
        return total, numel / self.full_numel

    def predict(self, channels: Mapping[str, int]) -> float:
        """Predicted milliseconds of the network keeping ``channels`` (group -> count)."""
        layers, share = self.parts(channels)
        if self.fit:
            a, b, c = self.fit
            return a * layers + b * share + c
        return layers + self.rest_ms * share

    def to_dict(self) -> dict:
        return {
            "settings": asdict(self.settings),
            "layers": [asdict(layer) for layer in self.layers],
            "tables": self.tables,
            "sizes": self.sizes,
            "rest_ms": self.rest_ms,
            "fit": self.fit,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> LatencyTable:
        return cls(
            LatencySettings(**d["settings"]),
            [_Layer(**layer) for layer in d["layers"]],
            {k: dict(v) for k, v in d["tables"].items()},
            dict(d["sizes"]),
            float(d["rest_ms"]),
            d.get("fit"),
        )


def table_layers(graph: ChannelGraph) -> tuple[list[_Layer], dict[str, dict]]:
    """The layers a table times, and the distinct layer shapes among them."""
    model = graph.model
    out_of = {m: g.name for g in graph.groups for m in g.members}
    in_of: dict[str, list[str]] = {}
    for g in graph.groups:
        for c in g.consumers:
            in_of.setdefault(c, []).append(g.name)
    seen: dict[str, tuple[dict, torch.Tensor, torch.Tensor]] = {}

    def keep(name: str):
        def hook(mod, inp, out) -> None:  # a hook that returned something would replace the output
            seen.setdefault(name, (mod, inp[0], out))

        return hook

    hooks = [
        m.register_forward_hook(keep(name)) for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(graph.example_input)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    layers, shapes = [], {}
    for name, (m, x, y) in seen.items():
        shape = _layer_shape(m, x)
        if shape is None:
            continue
        depthwise = shape["kind"] == "dwconv"
        in_width = getattr(m, "in_channels", None) or getattr(m, "in_features", None) or layer_width(m)
        out_width = getattr(m, "out_channels", None) or m.out_features
        key_shape = {**shape, "in_width": in_width, "out_width": out_width}
        key = repr(sorted(key_shape.items()))
        shapes[key] = key_shape
        out_group = out_of.get(name)
        in_groups = [] if depthwise else in_of.get(name, [])
        layers.append(_Layer(name, key, out_group, in_groups, in_width, out_width, int(y[0].numel()), depthwise))
    return layers, shapes


def time_shape(shape: dict, settings: LatencySettings, count: int) -> dict:
    """One layer shape timed over ``count`` x ``count`` kept (input, output) channel counts
    (a depthwise conv over ``count`` counts: its output follows its input)."""
    cins = levels(shape["in_width"], count)
    depthwise = shape["kind"] == "dwconv"
    couts = cins if depthwise else levels(shape["out_width"], count)
    ms = []
    for cin in cins:
        row = []
        for cout in [cin] if depthwise else couts:
            layer, in_shape = _make_layer(shape, cin, cout)
            model = onnx_bytes(layer, torch.zeros(1, *in_shape)) if settings.runtime == "onnxruntime" else layer
            row.append(measure(model, in_shape, settings).median_ms)
        ms.append(row * len(couts) if depthwise else row)
    return {"cin": cins, "cout": couts, "ms": ms}


# build_table's calibration fit per runtime (see fit_calibration; part of a cached table's key).
# torch: ``nonneg`` (2026-12-07: on ResNet-56 it cut the median error of the builds whose
# least-squares fit went negative from 11.9-20.7% to 8.6-12.6%). onnxruntime: ``ols``. Its
# least-squares fits carried a negative activation term in 5 of 6 networks (ONNX Runtime fuses
# what the layers timed alone pay for), and ``nonneg``, which zeroes that term, was worse in
# all 6 of bench.latency's onnxruntime rows (median 3.4-28.3% against 2.3-12.8%; on
# MobileNetV2 it left a constant): docs/benchmarks.md
SOLVERS = {"torch": "nonneg", "onnxruntime": "ols"}


def solver_for(runtime: str) -> str:
    """The calibration fit ``build_table`` uses for tables of ``runtime`` (torch's for any other)."""
    return SOLVERS.get(runtime, SOLVERS["torch"])


def build_table(
    graph: ChannelGraph,
    settings: LatencySettings,
    *,
    count: int = 6,
    time_shapes: Callable[[dict[str, dict]], dict[str, dict]] | None = None,
    build: Callable[[ChannelSpec], nn.Module] | None = None,
    calibrate: int = 8,
    keep_min: float = 0.25,
    solver: str | None = None,
    round_to: int = 1,
) -> LatencyTable:
    """Time every layer shape of ``graph``'s network (``time_shapes`` may spread them over
    workers; by default they run here), then the whole network for the rest. With
    ``build`` (a spec -> its pruned network), ``calibrate`` random pruned networks and the
    whole one are timed too, and ``a * layers + b * activation share + c`` is fitted to
    them (``solver``: see ``fit_calibration``; by default the runtime's, ``SOLVERS``):
    what isolated layers miss (caches, the
    framework's per-call time) is then learned, not assumed. The networks checked later
    are other draws. The random networks keep multiples of ``round_to``, as the search
    that reads the table does: on ONNX Runtime the same 20 keep-ratio draws for a
    MobileNetV2 ran 28.9-48.1 ms with any count and 11.5-19.6 ms rounded to multiples of
    8 (docs/benchmarks.md), a regime the layers timed alone do not show."""
    check_runtime(settings)
    layer_settings = LatencySettings(**{**asdict(settings), "warmup": 3, "repeats": max(5, settings.repeats // 3)})
    layers, shapes = table_layers(graph)
    if time_shapes is None:
        tables = {k: time_shape(s, layer_settings, count) for k, s in shapes.items()}
    else:
        tables = time_shapes(shapes)
    sizes = {g.name: g.channels for g in graph.groups}
    table = LatencyTable(settings, layers, tables, sizes, 0.0)
    shape = tuple(graph.example_input.shape[1:])
    full = measure(graph.model, shape, settings).median_ms
    table.rest_ms = full - table.predict(sizes)
    if build is not None and calibrate > 0:
        rng = random.Random(1_000_003)  # other draws than check_table's
        ref = _reference(graph, settings)
        rows, ys = [(*table.parts(sizes), 1.0)], [full]
        for _ in range(calibrate):
            ratios = {g.name: rng.uniform(keep_min, 1.0) for g in graph.groups}
            spec = ChannelSpec.from_ratios(graph.groups, ratios, round_to)
            rows.append((*table.parts(spec.channels), 1.0))
            cut, whole = measure_side_by_side([build(spec), ref], shape, settings)
            ys.append(cut.median_ms / whole.median_ms * full)  # beside the whole network: drift cancels
        table.calibration = {"rows": rows, "ms": ys}
        table.fit = fit_calibration(rows, ys, solver or solver_for(settings.runtime))
    return table


def fit_calibration(rows: list[tuple[float, ...]], ys: list[float], solver: str = "ols") -> list[float]:
    """``[a, b, c]`` of ``ms = a * layers + b * activation share + c`` on the calibration
    networks. ``ols``: least squares. ``nonneg``: least squares with every coefficient at
    least 0 (a layer costs time, the rest costs time: a negative slope is the fit leaning
    on noise, since the two terms move together across pruned networks). ``slopes``: the
    slopes at least 0, the constant free (it may be negative for a reason: each layer timed
    alone pays the per-call time that the whole network pays once). Constrained fits solve
    every set of free terms and keep the best that stays within its bounds."""
    x = torch.tensor(rows, dtype=torch.float64)
    y = torch.tensor(ys, dtype=torch.float64)[:, None]
    if solver == "ols":
        return [float(v) for v in torch.linalg.lstsq(x, y).solution[:, 0]]
    if solver not in ("nonneg", "slopes"):
        raise ValueError(f"unknown calibration solver {solver!r} (ols, nonneg, slopes)")
    n = x.shape[1]
    bounded = list(range(n)) if solver == "nonneg" else list(range(n - 1))
    always = [i for i in range(n) if i not in bounded]
    best, best_err = [0.0] * n, float(y.square().sum())
    for mask in range(2 ** len(bounded)):
        free = sorted(always + [i for j, i in enumerate(bounded) if mask >> j & 1])
        if not free:
            continue
        sol = torch.linalg.lstsq(x[:, free], y).solution[:, 0].tolist()
        if any(v < 0 for i, v in zip(free, sol) if i in bounded):
            continue
        coef = [0.0] * n
        for i, v in zip(free, sol):
            coef[i] = v
        err = float((x @ torch.tensor(coef, dtype=torch.float64)[:, None] - y).square().sum())
        if err < best_err:
            best, best_err = coef, err
    return best


def _reference(graph: ChannelGraph, settings: LatencySettings) -> nn.Module | bytes:
    """The whole network, ready to be timed beside pruned ones (exported once for ONNX)."""
    model = copy.deepcopy(graph.model).eval()
    if settings.runtime == "onnxruntime":
        return onnx_bytes(model.cpu(), torch.zeros(1, *graph.example_input.shape[1:]))
    return model


def check_table(
    table: LatencyTable,
    graph: ChannelGraph,
    build: Callable[[ChannelSpec], nn.Module],
    *,
    n: int = 20,
    keep_min: float = 0.25,
    seed: int = 0,
    round_to: int = 1,
) -> dict:
    """Predicted against measured latency on ``n`` random pruned networks (per-group keep
    ratios drawn in [keep_min, 1], counts kept in multiples of ``round_to`` as the search
    keeps them), each timed beside the whole network in alternating
    rounds. The error is the one budget mode and the front rely on: the predicted latency
    ratio (the network's prediction over the whole one's) against the measured ratio, as
    ``pairs`` of (predicted, measured) ms with the prediction scaled by the whole
    network's time in the same rounds. ``abs_pairs`` and the ``*_abs_rel_error`` figures
    compare the table's own milliseconds with the measured ones, which a machine's drift
    since the table was built moves too."""
    rng = random.Random(seed)
    shape = tuple(graph.example_input.shape[1:])
    ref = _reference(graph, table.settings)
    whole_pred = table.predict(table.sizes)
    pairs, abs_pairs, channels, wholes = [], [], [], []
    for _ in range(n):
        ratios = {g.name: rng.uniform(keep_min, 1.0) for g in graph.groups}
        spec = ChannelSpec.from_ratios(graph.groups, ratios, round_to)
        cut, whole = measure_side_by_side([build(spec), ref], shape, table.settings)
        predicted = table.predict(spec.channels)
        pairs.append((predicted / whole_pred * whole.median_ms, cut.median_ms))
        abs_pairs.append((predicted, cut.median_ms))
        channels.append(spec.channels)
        wholes.append(whole.median_ms)
    errors = [abs(p - m) / m for p, m in pairs]
    abs_errors = [abs(p - m) / m for p, m in abs_pairs]
    return {
        "n": n,
        "median_rel_error": statistics.median(errors),
        "worst_rel_error": max(errors),
        "median_abs_rel_error": statistics.median(abs_errors),
        "worst_abs_rel_error": max(abs_errors),
        "pairs": pairs,
        "abs_pairs": abs_pairs,
        "channels": channels,
        "whole_ms": wholes,  # the whole network's time in each network's rounds
    }
