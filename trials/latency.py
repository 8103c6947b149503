"""Latency of a network on the runtime and device it will be deployed on, measured and
modelled.

``measure`` times one forward pass of a batch: a median over warmed-up repeats, with
its spread (the interquartile range), on the ``torch`` runtime (eager; on CUDA with
channels_last and bf16 autocast, as trials run) or on ``onnxruntime`` (the network
exported to ONNX; CPU, or CUDA when the CUDA provider is present). ``measure_side_by_side``
times several networks in alternating rounds, so that a ratio between them is not
tilted by load that comes and goes.

``LatencyTable`` is a NetAdapt/HALP-style latency model: every conv and linear layer is
timed alone over a grid of kept input and output channel counts (layers of one shape
share a table), and a network's latency is predicted as the sum over its layers, plus
the rest (BN, activations, additions, pooling, the framework's own time: measured once
on the whole network and scaled by the share of activations kept). Trials then need not
all be timed, and budget mode can bisect on it before verifying by measurement.
"""

from __future__ import annotations

import io
import random
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

from trials.errors import UserError
from trials.groups import ChannelGraph, layer_width
from trials.spec import ChannelSpec

RUNTIMES = ("torch", "onnxruntime")
ONNX_EXTRA = "pip install 'prunetune[latency]' (onnx, onnxruntime)"


@dataclass(frozen=True)
class LatencySettings:
    runtime: str = "torch"
    device: str = "cpu"
    batch_size: int = 1
    threads: int | None = None  # CPU threads while timing (None: as the process has them)
    warmup: int = 10
    repeats: int = 30

    def key(self) -> str:
        return f"{self.runtime}-{self.device}-b{self.batch_size}-t{self.threads or 'all'}"


@dataclass(frozen=True)
class Timing:
    median_ms: float
    spread_ms: float  # interquartile range of the repeats
    repeats: int


def check_runtime(settings: LatencySettings) -> None:
    """Refuse, naming the fix, what cannot be measured here."""
    if settings.runtime not in RUNTIMES:
        raise UserError(f"latency.runtime '{settings.runtime}' is unknown: use one of {', '.join(RUNTIMES)}")
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"latency.device '{settings.device}': no CUDA device is available here")
    if settings.runtime == "onnxruntime":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            raise UserError(f"latency.runtime onnxruntime needs the latency extra: {ONNX_EXTRA}") from None
        if settings.device.startswith("cuda") and "CUDAExecutionProvider" not in _providers():
            raise UserError("latency.device cuda with onnxruntime needs onnxruntime-gpu (no CUDA provider here)")


def _providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def _stats(times: list[float]) -> Timing:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return Timing(statistics.median(times), q[2] - q[0], len(times))


class _Threads:
    """Set torch's intra-op threads for the measurement, restore them after."""

    def __init__(self, n: int | None) -> None:
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self):
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def onnx_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    """The model exported to ONNX in memory (TorchScript exporter: a second where the
    dynamo exporter takes ten; batch size dynamic)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            buf,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
    return buf.getvalue()


def _session(onnx_model: bytes, settings: LatencySettings):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.threads or 0
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    cuda = settings.device.startswith("cuda")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    return ort.InferenceSession(onnx_model, opts, providers=providers)


def runner(model: nn.Module | bytes, input_shape: tuple[int, ...], settings: LatencySettings) -> Callable[[], None]:
    """A no-argument callable running one forward pass of a batch, synchronously. ``model``
    is a module (either runtime) or ONNX bytes (onnxruntime)."""
    shape = (settings.batch_size, *input_shape)
    if settings.runtime == "onnxruntime":
        if isinstance(model, nn.Module):
            model = onnx_bytes(model.cpu(), torch.zeros(1, *input_shape))
        session = _session(model, settings)
        feed = {session.get_inputs()[0].name: torch.randn(shape).numpy()}
        return lambda: session.run(None, feed)
    device = torch.device(settings.device)
    model = model.to(device).eval()
    x = torch.randn(shape, device=device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

        def run() -> None:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                model(x)
            torch.cuda.synchronize()

        return run

    def run_cpu() -> None:
        with torch.no_grad():
            model(x)

    return run_cpu


def measure_side_by_side(
    models: list[nn.Module | bytes], input_shape: tuple[int, ...], settings: LatencySettings
) -> list[Timing]:
    """Time several networks in alternating rounds (one repeat of each per round)."""
    check_runtime(settings)
    with _Threads(settings.threads):
        runs = [runner(m, input_shape, settings) for m in models]
        for _ in range(settings.warmup):
            for run in runs:
                run()
        times: list[list[float]] = [[] for _ in runs]
        for _ in range(settings.repeats):
            for run, out in zip(runs, times):
                t0 = time.perf_counter()
                run()
                out.append((time.perf_counter() - t0) * 1000.0)
    return [_stats(t) for t in times]


def measure(model: nn.Module | bytes, input_shape: tuple[int, ...], settings: LatencySettings) -> Timing:
    return measure_side_by_side([model], input_shape, settings)[0]


# ---- the latency model -------------------------------------------------------------------


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


def build_table(
    graph: ChannelGraph,
    settings: LatencySettings,
    count: int = 6,
    time_shapes: Callable[[dict[str, dict]], dict[str, dict]] | None = None,
    build: Callable[[ChannelSpec], nn.Module] | None = None,
    calibrate: int = 8,
    keep_min: float = 0.25,
) -> LatencyTable:
    """Time every layer shape of ``graph``'s network (``time_shapes`` may spread them over
    workers; by default they run here), then the whole network for the rest. With
    ``build`` (a spec -> its pruned network), ``calibrate`` random pruned networks and the
    whole one are timed too, and ``a * layers + b * activation share + c`` is fitted to
    them (least squares): what isolated layers miss (caches, the framework's per-call
    time) is then learned, not assumed. The networks checked later are other draws."""
    check_runtime(settings)
    layer_settings = LatencySettings(**{**asdict(settings), "warmup": 3, "repeats": max(5, settings.repeats // 3)})
    layers, shapes = table_layers(graph)
    if time_shapes is None:
        tables = {k: time_shape(s, layer_settings, count) for k, s in shapes.items()}
    else:
        tables = time_shapes(shapes)
    sizes = {g.name: g.channels for g in graph.groups}
    table = LatencyTable(settings, layers, tables, sizes, 0.0)
    full = measure(graph.model, tuple(graph.example_input.shape[1:]), settings).median_ms
    table.rest_ms = full - table.predict(sizes)
    if build is not None and calibrate > 0:
        rng = random.Random(1_000_003)  # other draws than check_table's
        shape = tuple(graph.example_input.shape[1:])
        rows, ys = [(*table.parts(sizes), 1.0)], [full]
        for _ in range(calibrate):
            spec = ChannelSpec.from_ratios(graph.groups, {g.name: rng.uniform(keep_min, 1.0) for g in graph.groups})
            rows.append((*table.parts(spec.channels), 1.0))
            ys.append(measure(build(spec), shape, settings).median_ms)
        coef = torch.linalg.lstsq(
            torch.tensor(rows, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)[:, None]
        )
        table.fit = [float(v) for v in coef.solution[:, 0]]
    return table


def check_table(
    table: LatencyTable,
    graph: ChannelGraph,
    build: Callable[[ChannelSpec], nn.Module],
    n: int = 20,
    keep_min: float = 0.25,
    seed: int = 0,
) -> dict:
    """Predicted against measured latency on ``n`` random pruned networks (per-group keep
    ratios drawn in [keep_min, 1]): the median and worst relative error, and the pairs."""
    rng = random.Random(seed)
    shape = tuple(graph.example_input.shape[1:])
    pairs, channels = [], []
    for _ in range(n):
        ratios = {g.name: rng.uniform(keep_min, 1.0) for g in graph.groups}
        spec = ChannelSpec.from_ratios(graph.groups, ratios)
        measured = measure(build(spec), shape, table.settings).median_ms
        pairs.append((table.predict(spec.channels), measured))
        channels.append(spec.channels)
    errors = [abs(p - m) / m for p, m in pairs]
    return {
        "n": n,
        "median_rel_error": statistics.median(errors),
        "worst_rel_error": max(errors),
        "pairs": pairs,
        "channels": channels,
    }
