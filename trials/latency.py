"""Latency of a network on the runtime and device it will be deployed on, measured.

``measure`` times one forward pass of a batch: a median over warmed-up repeats, with
its spread (the interquartile range), on the ``torch`` runtime (eager; on CUDA with
channels_last and bf16 autocast, as trials run) or on ``onnxruntime`` (the network
exported to ONNX; CPU, or CUDA when the CUDA provider is present). ``measure_side_by_side``
times several networks in alternating rounds, so that a ratio between them is not
tilted by load that comes and goes. ``clock: thread`` times the CPU time of the measuring
thread instead of the wall clock: on one CPU thread that is the forward pass's own time,
which other processes on a shared machine do not stretch (measured on this 2-core host with
4 busy processes beside it: ResNet-20 at batch 32, wall time 75-104 ms against 39 ms idle, thread time
42-46 ms).
The latency model built from such measurements is ``trials.latency_table``.
"""

from __future__ import annotations

import io
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from trials.errors import UserError

RUNTIMES = ("torch", "onnxruntime")
CLOCKS = ("wall", "thread")  # latency.clock: wall time, or the measuring thread's CPU time
OBJECTIVES = ("macs", "params", "latency")  # what a search trades against accuracy (search.objective)
ONNX_EXTRA = "pip install 'prunetune[latency]' (onnx, onnxruntime)"


@dataclass(frozen=True)
class LatencySettings:
    runtime: str = "torch"
    device: str = "cpu"
    batch_size: int = 1
    threads: int | None = None  # CPU threads while timing (None: as the process has them)
    warmup: int = 10
    repeats: int = 30
    clock: str = "wall"  # or "thread": the measuring thread's CPU time (CPU, one thread)

    def key(self) -> str:
        clock = "" if self.clock == "wall" else f"-{self.clock}"
        return f"{self.runtime}-{self.device}-b{self.batch_size}-t{self.threads or 'all'}{clock}"


@dataclass(frozen=True)
class Timing:
    median_ms: float
    spread_ms: float  # interquartile range of the repeats
    repeats: int


_THREAD_CLOCK = (
    "latency.clock thread needs latency.device cpu and latency.threads 1: one thread's CPU time "
    "is the forward pass's time only where that thread does all the work"
)


def check_runtime(settings: LatencySettings) -> None:
    """Refuse, naming the fix, what cannot be measured here."""
    if settings.runtime not in RUNTIMES:
        raise UserError(f"latency.runtime '{settings.runtime}' is unknown: use one of {', '.join(RUNTIMES)}")
    if settings.clock not in CLOCKS:
        raise UserError(f"latency.clock '{settings.clock}' is unknown: use one of {', '.join(CLOCKS)}")
    if settings.clock == "thread" and (settings.device != "cpu" or settings.threads != 1):
        raise UserError(_THREAD_CLOCK)
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
    models: list[nn.Module | bytes],
    input_shape: tuple[int, ...] | list[tuple[int, ...]],
    settings: LatencySettings,
) -> list[Timing]:
    """Time several networks in alternating rounds (one repeat of each per round).
    ``input_shape`` is every network's, or a list of one per network."""
    check_runtime(settings)
    per_model = bool(input_shape) and isinstance(input_shape[0], tuple | list)
    shapes = [tuple(s) for s in input_shape] if per_model else [tuple(input_shape)] * len(models)
    with _Threads(settings.threads):
        runs = [runner(m, shape, settings) for m, shape in zip(models, shapes, strict=True)]
        for _ in range(settings.warmup):
            for run in runs:
                run()
        clock = time.thread_time if settings.clock == "thread" else time.perf_counter
        times: list[list[float]] = [[] for _ in runs]
        for _ in range(settings.repeats):
            for run, out in zip(runs, times):
                t0 = clock()
                run()
                out.append((clock() - t0) * 1000.0)
    return [_stats(t) for t in times]


def measure(model: nn.Module | bytes, input_shape: tuple[int, ...], settings: LatencySettings) -> Timing:
    return measure_side_by_side([model], input_shape, settings)[0]


ONNX_RTOL = 1e-3  # exported outputs within this share of the largest PyTorch output (float32 round-off)


def onnx_parity(model: nn.Module, onnx_model: bytes, example: torch.Tensor) -> float:
    """The largest absolute difference between ``onnx_model``'s outputs on onnxruntime (CPU)
    and ``model``'s in PyTorch on ``example``, relative to PyTorch's largest output."""
    settings = LatencySettings(runtime="onnxruntime")
    check_runtime(settings)
    session = _session(onnx_model, settings)
    with torch.no_grad():
        want = model.eval().cpu()(example.cpu()).numpy()
    got = session.run(None, {session.get_inputs()[0].name: example.cpu().numpy()})[0]
    return float(abs(got - want).max() / max(abs(want).max(), 1e-12))
