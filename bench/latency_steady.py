"""How steady is the latency model from one build to the next, and what steadies it?

The same network's table is built and checked (``trials.latency_table.check_table``: 20
random pruned networks, each timed beside the whole one) several times per variant, the
variants alternating build by build:

- ``today``: ``build_table`` as the product ran it before 2026-12-06 (each layer level
  timed alone, a third of ``latency.repeats``, at least 5; 8 calibration networks);
- ``repeats``: each level timed alone over all of ``latency.repeats``;
- ``paired``: each level timed beside its shape's full-width layer in alternating rounds
  (half the repeats each, so about the same time as ``repeats``), stored as its ratio to
  that layer times the layer's median over all rounds: drift during the build cancels;
- ``shared``: as ``paired``, but one reference layer for every shape (the first
  shape's full width), so drift between shapes cancels too;
- ``calib16``: ``today`` with 16 calibration networks instead of 8;
- ``paired16``: ``paired`` with 16 calibration networks.

Each variant's table is also scored with its calibration refitted by the ``nonneg``
solver (``NAME+nonneg``: no coefficient below 0), by the ``slopes`` solver (``NAME+slopes``:
no slope below 0, the constant free) and with no calibration (``NAME+nofit``:
the layers plus the rest scaled by the activations kept), on the same timings: those
rows differ from their variant only in the fit.

Each round builds every variant's table, then measures one set of 20 check networks
(each beside the whole one) that scores all of them, so the variants are compared on
the same measurements. Printed per build: the median and worst ratio error; at the end,
per variant, the mean and spread of the medians. Run: ``python -m bench.latency_steady resnet56 --builds 3``.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import replace

import torch

from bench.report import latency_case, network_parser
from trials.latency import LatencySettings, measure_side_by_side, onnx_bytes
from trials.latency_table import _make_layer, build_table, check_table, fit_calibration, levels, time_shape


def _coef(fit: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in fit) + "]"


def _layer_model(shape: dict, cin: int, cout: int, settings: LatencySettings):
    layer, in_shape = _make_layer(shape, cin, cout)
    if settings.runtime == "onnxruntime":
        return onnx_bytes(layer, torch.zeros(1, *in_shape)), in_shape
    return layer, in_shape


def time_shapes_paired(shapes: dict[str, dict], settings: LatencySettings, count: int, *, shared: bool = False) -> dict:
    """As ``time_shape`` for every shape, but each level is timed beside a reference layer
    in alternating rounds and stored as its ratio to it, times the reference's median over
    every round: load that comes and goes during the build cancels, as it does when whole
    networks are timed side by side. The reference is each shape's full-width layer, or
    with ``shared`` one layer for all shapes (the first shape's full width)."""
    refs = {k: _layer_model(s, s["in_width"], s["out_width"], settings) for k, s in shapes.items()}
    if shared:
        first = next(iter(refs.values()))
        refs = {k: first for k in refs}
    ratios, ref_ms = {}, {k: [] for k in shapes}
    for key, shape in shapes.items():
        cins = levels(shape["in_width"], count)
        depthwise = shape["kind"] == "dwconv"
        couts = cins if depthwise else levels(shape["out_width"], count)
        (ref, ref_shape), rows = refs[key], []
        for cin in cins:
            row = []
            for cout in [cin] if depthwise else couts:
                level, in_shape = _layer_model(shape, cin, cout, settings)
                t_level, t_ref = measure_side_by_side([level, ref], [in_shape, ref_shape], settings)
                row.append(t_level.median_ms / t_ref.median_ms)
                ref_ms[key].append(t_ref.median_ms)
            rows.append(row * len(couts) if depthwise else row)
        ratios[key] = {"cin": cins, "cout": couts, "ratio": rows}
    every = [t for ts in ref_ms.values() for t in ts]
    out = {}
    for key, t in ratios.items():
        ref = statistics.median(every if shared else ref_ms[key])
        out[key] = {"cin": t["cin"], "cout": t["cout"], "ms": [[r * ref for r in row] for row in t["ratio"]]}
    return out


def _variants(settings: LatencySettings) -> dict:
    """Each variant's layer timing (and calibration count), as the module docstring lists them."""
    old = replace(settings, warmup=3, repeats=max(5, settings.repeats // 3))
    return {
        "today": {"time_shapes": lambda shapes: {k: time_shape(s, old, 6) for k, s in shapes.items()}},
        "repeats": {
            "time_shapes": lambda shapes: {k: time_shape(s, replace(settings, warmup=3), 6) for k, s in shapes.items()}
        },
        "paired": {
            "time_shapes": lambda shapes: time_shapes_paired(
                shapes, replace(settings, warmup=3, repeats=settings.repeats // 2), 6
            )
        },
        "shared": {
            "time_shapes": lambda shapes: time_shapes_paired(
                shapes, replace(settings, warmup=3, repeats=settings.repeats // 2), 6, shared=True
            )
        },
        "paired16": {
            "time_shapes": lambda shapes: time_shapes_paired(
                shapes, replace(settings, warmup=3, repeats=settings.repeats // 2), 6
            ),
            "calibrate": 16,
        },
        "calib16": {
            "time_shapes": lambda shapes: {k: time_shape(s, old, 6) for k, s in shapes.items()},
            "calibrate": 16,
        },
    }


def main() -> None:
    ap = network_parser(__doc__, builds=3)
    ap.add_argument("--variants", default="today,repeats,paired,calib16")
    args = ap.parse_args()
    settings, build, graph = latency_case(args, repeats=20)
    variants = _variants(settings)
    chosen = args.variants.split(",")
    medians: dict[str, list[float]] = {v: [] for v in chosen}
    for i in range(args.builds):
        tables = {}
        for name in chosen:
            kw = {"calibrate": 8, "solver": "ols", **variants[name]}  # as measured: ols, refitted below
            t0 = time.perf_counter()
            tables[name] = build_table(graph, settings, count=6, build=build, keep_min=0.25, **kw)
            print(f"build {i + 1} {name}: table {time.perf_counter() - t0:.0f} s", flush=True)
        # one set of check networks, measured once, scores every variant's table of this round
        check = check_table(tables[chosen[0]], graph, build, n=20, keep_min=0.25, seed=i)
        for name in chosen:  # the same timings, fitted by the other solvers (and not at all)
            table, cal = tables[name], tables[name].calibration
            fits = [(solver, fit_calibration(cal["rows"], cal["ms"], solver)) for solver in ("nonneg", "slopes")]
            for solver, fit in [*fits, ("nofit", None)]:
                other = copy.copy(table)
                other.fit = fit
                tables[f"{name}+{solver}"] = other
            print(
                f"build {i + 1} {name}: fit ols {_coef(table.fit)}, nonneg {_coef(tables[name + '+nonneg'].fit)}, "
                f"slopes {_coef(tables[name + '+slopes'].fit)}"
            )
        for name, table in tables.items():
            medians.setdefault(name, [])
            whole = table.predict(table.sizes)
            errors = [
                abs(table.predict(c) / whole * w - m) / m
                for c, w, (_, m) in zip(check["channels"], check["whole_ms"], check["pairs"])
            ]
            medians[name].append(100 * statistics.median(errors))
            print(
                f"{args.arch} {args.size}x{args.size} batch {args.batch} build {i + 1} {name}: ratio error median "
                f"{medians[name][-1]:.1f}%, worst {100 * max(errors):.1f}%",
                flush=True,
            )
    for name, xs in medians.items():
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        print(f"{name}: median error over builds {statistics.mean(xs):.1f} ± {sd:.1f}% (max {max(xs):.1f}%)")


if __name__ == "__main__":
    main()
