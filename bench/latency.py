"""The latency model's error (#17 point 7, first part): per-layer latency tables
(trials/latency.py) predicting the latency of random pruned networks, against direct
measurement, on this machine's CPU, for the torch and onnxruntime runtimes.

For each network: the table over ``LEVELS`` kept counts per layer side, then ``N`` random
pruned networks (per-group keep ratios drawn in [0.25, 1]) each timed beside the whole
network in alternating rounds; reported: the median and worst relative error of the
predicted latency ratio (and of the table's own milliseconds), the table's build time, and the
span of measured latencies (so an error can be read against how much pruning moved the
time). Run: ``python -m bench.latency`` (about 35 minutes on 2 cores: every row of the
docs' table); ``--cases torchvision/resnet50:224:1`` runs only the named cases
(ARCH:SIDE:BATCH) and merges them into the stored rows (a row of the same case and
runtime is replaced).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from bench.report import ROOT, machine, publish
from trials.groups import build_graph
from trials.latency import LatencySettings, measure_side_by_side
from trials.latency_table import SOLVERS, build_table, check_table, fit_calibration, solver_for
from trials.models import create_model
from trials.prune import rebuild
from trials.spec import ChannelSpec

N, LEVELS, CALIBRATE = 20, 6, 8
CASES = [  # arch, input side, batch
    ("resnet20", 32, 16),
    ("resnet56", 32, 16),
    ("mobilenet_v2", 32, 16),
    ("resnet20", 32, 1),
    ("torchvision/resnet50", 224, 1),
    ("torchvision/mobilenet_v2", 224, 1),
]
RUNTIMES = ("torch", "onnxruntime")


def run_case(arch: str, side: int, batch: int, runtime: str, round_to: int = 1) -> dict:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, in_channels=3).eval()
    graph = build_graph(model, (3, side, side), arch)
    settings = LatencySettings(runtime=runtime, batch_size=batch, threads=1, warmup=5, repeats=20)
    build = lambda spec: rebuild(arch, spec, 10, 3, side)  # noqa: E731
    t0 = time.perf_counter()
    table = build_table(graph, settings, count=LEVELS, build=build, calibrate=CALIBRATE, round_to=round_to)
    built = time.perf_counter() - t0
    check = check_table(table, graph, build, n=N, round_to=round_to)  # other draws than the calibration's
    fit = table.fit

    def ratio_errors(refit) -> list[float]:  # the check's networks, scored with another fit
        table.fit = refit
        whole = table.predict(table.sizes)
        return [
            abs(table.predict(c) / whole * w - m) / m
            for c, w, (_, m) in zip(check["channels"], check["whole_ms"], check["pairs"])
        ]

    plain = ratio_errors(None)
    # the same timings fitted by both solvers, so the two compare paired (one is the default's)
    cal = table.calibration
    refit = {solver: ratio_errors(fit_calibration(cal["rows"], cal["ms"], solver)) for solver in ("ols", "nonneg")}
    table.fit = fit
    measured = [m for _, m in check["pairs"]]
    # the floor any model meets: the same networks' ratios to the whole one measured again
    repeat = []
    for c, w, m in zip(check["channels"], check["whole_ms"], measured):
        cut, whole = measure_side_by_side([build(ChannelSpec(dict(c), arch)), model], (3, side, side), settings)
        repeat.append(abs(cut.median_ms / whole.median_ms - m / w) / (m / w))
    return {
        "arch": arch,
        "side": side,
        "batch": batch,
        "runtime": runtime,
        "round_to": round_to,
        "build_s": built,
        "shapes": len(table.tables),
        "median_rel_error": check["median_rel_error"],
        "worst_rel_error": check["worst_rel_error"],
        "median_abs_rel_error": check["median_abs_rel_error"],
        "worst_abs_rel_error": check["worst_abs_rel_error"],
        "solver": solver_for(runtime),
        **{f"median_rel_error_{k}": statistics.median(v) for k, v in refit.items()},
        **{f"worst_rel_error_{k}": max(v) for k, v in refit.items()},
        "median_rel_error_uncalibrated": statistics.median(plain),
        "worst_rel_error_uncalibrated": max(plain),
        "median_repeat_error": statistics.median(repeat),
        "worst_repeat_error": max(repeat),
        "measured_min_ms": min(measured),
        "measured_max_ms": max(measured),
        "fit": fit,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"  # rows measured before a column existed: -


def _case(text: str) -> tuple[str, int, int]:
    arch, side, batch = text.rsplit(":", 2)
    return arch, int(side), int(batch)


def _key(row: dict) -> tuple:
    return row["arch"], row["side"], row["batch"], row["runtime"], row.get("round_to", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", type=_case, help="ARCH:SIDE:BATCH, merged into the stored rows")
    parser.add_argument(
        "--round-to", type=int, default=1, help="the random networks keep multiples of this (a search's round_to)"
    )
    args = parser.parse_args()
    rows = []
    for arch, side, batch in args.cases or CASES:
        for runtime in RUNTIMES:
            row = run_case(arch, side, batch, runtime, args.round_to)
            print(row, flush=True)
            rows.append(row)
    stored = ROOT / "bench" / "results" / "latency.json"
    if args.cases and stored.is_file():  # the other cases as measured before
        new = {_key(r) for r in rows}
        rows = [r for r in json.loads(stored.read_text())["rows"] if _key(r) not in new] + rows
    lines = [
        "## Latency model: predicted against measured",
        "",
        f"`python -m bench.latency`. Per-layer latency tables ({LEVELS} kept counts per layer side, "
        "layers of one shape share a table) predict the latency of "
        f"{N} random pruned networks each (per-group keep ratios in [0.25, 1], counts kept in multiples of "
        "`round_to` as a search with that setting keeps them; 1: any count); each network is "
        "then timed beside the whole one in alternating rounds (median of 20 runs after 5, one thread). "
        "**Ratio error** (what budget mode and the front use): the predicted latency ratio to the whole "
        "network against the ratio measured in those rounds. Calibrated (what a search uses): "
        f"`a * layers + b * activations + c` fitted on {CALIBRATE} other random pruned networks (each timed "
        "beside the whole one) and the whole one, by the runtime's solver (`build_table`'s default: "
        f"{', '.join(f'{k} `{v}`' for k, v in SOLVERS.items())}; `ols` is least squares, `nonneg` every "
        "coefficient at least 0), and beside it each solver on the same timings; uncalibrated: the layers' sum plus the rest of the whole "
        "network scaled by the activations kept. Repeat: the same ratios measured a second time (the floor "
        "any model meets). Absolute: the table's milliseconds against the measured ones (moved also by the "
        "machine's drift since the table was built). Goal (#17): median error within 10%.",
        f"Machine: {machine()}.",
        "",
        "| network | input, batch | runtime | round_to | ratio error, calibrated (solver) | worst | `ols` | worst "
        "| `nonneg` | worst | uncalibrated | worst "
        "| repeat | worst | absolute ms error | worst | measured span (ms) | layer shapes | built in |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['side']}x{r['side']}, {r['batch']} | {r['runtime']} | {r.get('round_to', 1)} | "
            f"{100 * r['median_rel_error']:.1f}% ({r.get('solver', '-')}) | {100 * r['worst_rel_error']:.1f}% | "
            f"{_pct(r.get('median_rel_error_ols'))} | {_pct(r.get('worst_rel_error_ols'))} | "
            f"{_pct(r.get('median_rel_error_nonneg'))} | {_pct(r.get('worst_rel_error_nonneg'))} | "
            f"{100 * r['median_rel_error_uncalibrated']:.1f}% | {100 * r['worst_rel_error_uncalibrated']:.1f}% | "
            f"{_pct(r.get('median_repeat_error'))} | {_pct(r.get('worst_repeat_error'))} | "
            f"{_pct(r.get('median_abs_rel_error'))} | {_pct(r.get('worst_abs_rel_error'))} | "
            f"{r['measured_min_ms']:.2f} to {r['measured_max_ms']:.2f} | {r['shapes']} | {r['build_s']:.0f} s |"
        )
    publish("latency", {"rows": rows, "machine": machine()}, "\n".join(lines))


if __name__ == "__main__":
    main()
