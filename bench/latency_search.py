"""Does searching on latency buy accuracy at the same speed? (#17 point 7, second part)

Setting: bench/search_fmnist's (Fashion-MNIST at 16x16, ResNet-20, its cached baseline,
the same brief fine-tune, val for selection, the official test split read once to
report). Deployment: torch on this CPU, one thread, batch ``BATCH``.

Per seed and MACs target M:
  macs      TPE over per-group keep ratios in budget mode on MACs (every trial scaled onto
            M x the baseline's MACs), ``N`` trials fine-tuned, the best val wins. Its winner's
            latency ratio L is then measured (side by side with the baseline).
  latency   the same sampler and seed in budget mode on latency with target L: every
            trial scaled onto L by the latency table, then checked by measurement and
            nudged within the tolerance. ``N`` trials, the best val wins.
  uniform   one keep ratio everywhere, scaled onto latency L the same way (one fine-tune).
Both searches spend the same number of brief fine-tunes. Every latency is a referee
timing: the network and the baseline in alternating rounds (median of ``REFEREE``), and a
latency trial is eligible to win only within the tolerance of the target by it. The winners are fine-tuned
again (FINAL epochs, a data order no search saw), scored once on test, and timed side by
side (alternating rounds) with the baseline, so "equal latency" is measured, not
assumed. Deltas are paired per seed. Run: ``python -m bench.latency_search --seeds 5``; more seeds of
one target later: ``--targets 0.25 --first-seed 5 --seeds 5`` (the stored cells are kept).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import optuna
import torch

from bench.report import ROOT, machine, publish
from bench.search_fmnist import ARCH, FINETUNE, KEEP_MAX, KEEP_MIN, KEEP_STEP, SIZE, Bench, _names, _space
from trials.latency import LatencySettings, measure_side_by_side
from trials.latency_table import build_table, check_table
from trials.prune import rebuild
from trials.spec import ChannelSpec
from trials.trial import run_trial

BATCH = 32
SETTINGS = LatencySettings(batch_size=BATCH, threads=1, warmup=5, repeats=41)
FINAL_TIMING = LatencySettings(batch_size=BATCH, threads=1, warmup=10, repeats=61)
N = 12  # brief fine-tunes per search
MACS_TARGETS = (0.5, 0.25)
TOLERANCE = 0.03
REFEREE = 3  # referee timings per latency trial (their median decides eligibility)


def _cfg(b: Bench, keep, objective: str, target: float, seed: int, table: dict):
    return replace(
        b._cfg(keep, target, seed, "finetune", FINETUNE),
        objective=objective,
        latency=SETTINGS,
        latency_table=table,
        latency_tolerance=TOLERANCE,
    )


def search(b: Bench, objective: str, target: float, seed: int, table: dict) -> dict:
    """``N`` TPE trials in budget mode on ``objective``; the best val's result. On latency,
    only trials the referee times within the tolerance of the target are eligible: one
    timing of a candidate varies by a few percent from the next, and the most accurate of N
    trials that passed a noisy in-trial check is biased towards the slowest of them."""
    names = _names(b)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    tried = []
    for _ in range(N):
        t = study.ask(_space(names))
        r = run_trial(_cfg(b, dict(t.params), objective, target, seed, table))
        study.tell(t, r["val_accuracy"])
        if objective == "latency":
            r["referee"] = statistics.median(timed(b, [r["spec"]])[0] for _ in range(REFEREE))
        tried.append(r)
    eligible = [r for r in tried if objective != "latency" or r["referee"] <= target * (1 + TOLERANCE)]
    if not eligible:  # none within the budget: the closest to it
        return min(tried, key=lambda r: r["referee"]) | {"eligible": 0}
    return max(eligible, key=lambda r: r["val_accuracy"]) | {"eligible": len(eligible)}


def timed(b: Bench, specs: list[dict]) -> list[float]:
    """Latency ratios to the baseline of ``specs``' networks, all timed in alternating rounds."""
    nets = [rebuild(ARCH, ChannelSpec.from_dict(s), 10, 1, SIZE) for s in specs]
    base = rebuild(ARCH, ChannelSpec({g.name: g.channels for g in b.graph.groups}, ARCH), 10, 1, SIZE)
    times = measure_side_by_side([*nets, base], (1, SIZE, SIZE), FINAL_TIMING)
    return [t.median_ms / times[-1].median_ms for t in times[:-1]]


def cell(b: Bench, macs_target: float, seed: int, table: dict, say=print) -> dict:
    t0 = time.perf_counter()
    by_macs = search(b, "macs", macs_target, seed, table)
    lat = statistics.median(timed(b, [by_macs["spec"]])[0] for _ in range(REFEREE))
    by_latency = search(b, "latency", lat, seed, table)
    uniform = run_trial(_cfg(b, 1.0, "latency", lat, seed, table))
    winners = {"macs": by_macs, "latency": by_latency, "uniform": uniform}
    ratios = timed(b, [w["spec"] for w in winners.values()])
    out = {"seed": seed, "target_latency": lat, "seconds": 0.0, "eligible": by_latency["eligible"]}
    for (name, w), ratio in zip(winners.items(), ratios):
        out[name] = {
            "val": w["val_accuracy"],
            "test": b.final_test(w["spec"], seed),
            "latency_ratio": ratio,
            "macs_ratio": w["macs_ratio"],
            "spec": w["spec"],
        }
    out["seconds"] = time.perf_counter() - t0
    say(
        f"M {macs_target} seed {seed}: latency target {lat:.3f}; "
        + "; ".join(
            f"{k} test {out[k]['test']:.4f} at {out[k]['latency_ratio']:.3f}x latency, {out[k]['macs_ratio']:.3f}x MACs"
            for k in winners
        )  # fmt: skip
        + f" ({out['seconds']:.0f} s)"
    )
    return out


def _table(b: Bench, say=print):
    """The latency table of the bench's network, built and checked (20 random pruned networks)."""
    torch.manual_seed(0)
    build = lambda spec: rebuild(ARCH, spec, 10, 1, SIZE)  # noqa: E731
    tt = time.perf_counter()
    table = build_table(b.graph, SETTINGS, count=6, build=build, calibrate=8, keep_min=KEEP_MIN)
    check = check_table(table, b.graph, build, n=20, keep_min=KEEP_MIN)
    say(
        f"latency table {time.perf_counter() - tt:.0f} s: median error {100 * check['median_rel_error']:.1f}%, "
        f"worst {100 * check['worst_rel_error']:.1f}%"
    )
    return table, check


def run(seeds: list[int], say=print) -> dict:
    t0 = time.perf_counter()
    b = Bench()
    table, check = _table(b, say)
    results = {
        "settings": {"batch": BATCH, "n": N, "tolerance": TOLERANCE, "keep": [KEEP_MIN, KEEP_MAX, KEEP_STEP]},
        "finetune": FINETUNE,
        "table_error": {k: check[k] for k in ("median_rel_error", "worst_rel_error")},
        "baseline_test": b.baseline_test,
        "cells": {},
    }
    partial = ROOT / "bench" / "results" / "latency_search.partial.json"
    for m in MACS_TARGETS:
        results["cells"][str(m)] = []
        for s in seeds:
            results["cells"][str(m)].append(cell(b, m, s, table.to_dict(), say))
            partial.write_text(json.dumps(results, indent=1))  # a run cut short keeps what it measured
    results["seconds"] = time.perf_counter() - t0
    return results


def redo_uniform(say=print) -> dict:
    """Run the uniform row again on every stored cell (its seed), with the product's budget
    projection as it is now, onto the MACs search winner's latency timed again now (a
    machine drifts by a few percent between days); the stored searches' winners are timed
    again beside it (alternating rounds), so the three latency ratios of a cell come from
    one run. The uniform result it replaces is kept as ``uniform_before``."""
    t0 = time.perf_counter()
    stored = json.loads((ROOT / "bench" / "results" / "latency_search.json").read_text())
    b = Bench()
    table, check = _table(b, say)
    error = {k: check[k] for k in ("median_rel_error", "worst_rel_error")}
    for m, cells in stored["cells"].items():
        for c in cells:
            tc = time.perf_counter()
            c["target_latency_redo"] = statistics.median(timed(b, [c["macs"]["spec"]])[0] for _ in range(REFEREE))
            u = run_trial(_cfg(b, 1.0, "latency", c["target_latency_redo"], c["seed"], table.to_dict()))
            specs = [c["macs"]["spec"], c["latency"]["spec"], u["spec"]]
            ratios = [statistics.median(r) for r in zip(*(timed(b, specs) for _ in range(REFEREE)))]
            c.setdefault("uniform_before", c["uniform"])
            c["uniform"] = {
                "val": u["val_accuracy"],
                "test": b.final_test(u["spec"], c["seed"]),
                "latency_ratio": ratios[2],
                "macs_ratio": u["macs_ratio"],
                "spec": u["spec"],
            }
            c["retimed"] = {"macs": ratios[0], "latency": ratios[1], "uniform": ratios[2]}
            c["uniform_redo"] = {"table_error": error, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
            say(
                f"M {m} seed {c['seed']}: target {c['target_latency_redo']:.3f} (was {c['target_latency']:.3f}); "
                f"uniform {ratios[2]:.3f} "
                f"(was {c['uniform_before']['latency_ratio']:.3f}), test {c['uniform']['test']:.4f} "
                f"(was {c['uniform_before']['test']:.4f}); macs {ratios[0]:.3f}, latency {ratios[1]:.3f} "
                f"({time.perf_counter() - tc:.0f} s)"
            )
            (ROOT / "bench" / "results" / "latency_search.partial.json").write_text(json.dumps(stored, indent=1))
    stored["uniform_redo_seconds"] = time.perf_counter() - t0
    return stored


def _ms(xs: list[float], scale: float = 100.0) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{scale * statistics.mean(xs):+.2f} ± {scale * sd:.2f}"


# Student's t, two-sided 95%, by degrees of freedom (1.96 beyond the table)
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
       11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11, 18: 2.10, 19: 2.09}  # fmt: skip


def _ci(xs: list[float], scale: float = 100.0) -> str:
    """The 95% confidence interval of the mean paired delta (t over the seeds)."""
    if len(xs) < 2:
        return "-"
    half = T95.get(len(xs) - 1, 1.96) * statistics.stdev(xs) / len(xs) ** 0.5
    mean = statistics.mean(xs)
    return f"[{scale * (mean - half):+.2f}, {scale * (mean + half):+.2f}]"


def table_md(results: dict) -> str:
    lines = [
        "| MACs target of the MACs search | measured latency target | method | test acc (mean) | "
        "latency ratio (mean; a cell's three timed side by side) | MACs ratio (mean) | Δ test vs macs search (pp, paired, mean ± sd) | "
        "95% CI of the mean Δ | seeds ahead |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m, cells in results["cells"].items():
        lat = statistics.mean(c["target_latency"] for c in cells)
        for name in ("macs", "latency", "uniform"):
            test = statistics.mean(c[name]["test"] for c in cells)
            ratio = statistics.mean(c.get("retimed", {}).get(name, c[name]["latency_ratio"]) for c in cells)
            macs = statistics.mean(c[name]["macs_ratio"] for c in cells)
            deltas = [c[name]["test"] - c["macs"]["test"] for c in cells]
            ahead = sum(d > 0 for d in deltas)
            delta = "-" if name == "macs" else f"{_ms(deltas)}"
            ci = "-" if name == "macs" else _ci(deltas)
            wins = "-" if name == "macs" else f"{ahead}/{len(cells)}"
            lines.append(
                f"| {m} | {lat:.3f} | {name} | {100 * test:.2f} | {ratio:.3f} | {macs:.3f} | {delta} | {ci} | {wins} |"
            )
    return "\n".join(lines)


def _keep_stored_cells(results: dict) -> None:
    """Carry over the stored cells this run did not measure: other targets, and other seeds
    of the targets it ran (each cell records its seed and its own run's table error and
    machine), so one target, or more seeds of it, can be run at a time. A stored cell
    without a seed is from a run of seeds 0, 1, ... in order."""
    stored = ROOT / "bench" / "results" / "latency_search.json"
    if not stored.exists():
        return
    old = json.loads(stored.read_text())
    for cells in results["cells"].values():
        for c in cells:
            c["run"] = {"table_error": results["table_error"], "machine": results["machine"]}
    for m, cells in old.get("cells", {}).items():
        ran = {c["seed"] for c in results["cells"].get(m, [])}
        kept = []
        for i, c in enumerate(cells):
            c.setdefault("seed", i)
            c.setdefault("run", {"table_error": old.get("table_error"), "machine": old.get("machine")})
            if c["seed"] not in ran:
                kept.append(c)
        results["cells"][m] = sorted(kept + results["cells"].get(m, []), key=lambda c: c["seed"])
    results["cells"] = dict(sorted(results["cells"].items(), key=lambda kv: -float(kv[0])))


def main() -> None:
    global N, MACS_TARGETS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="run seeds FIRST_SEED.. (stored cells of other seeds are kept)"
    )
    ap.add_argument("--trials", type=int, default=N, help="brief fine-tunes per search")
    ap.add_argument("--smoke", action="store_true", help="one seed, one target, 2 trials; publishes nothing")
    ap.add_argument("--report", action="store_true", help="publish what a run cut short saved (its full cells)")
    ap.add_argument(
        "--targets",
        type=float,
        nargs="+",
        default=list(MACS_TARGETS),
        help="MACs targets to run; cells of other targets already in bench/results/latency_search.json are kept",
    )
    ap.add_argument(
        "--redo-uniform",
        action="store_true",
        help="run only the uniform row again on every stored cell (the product's budget projection as it is now)",
    )
    args = ap.parse_args()
    if args.redo_uniform:
        results = redo_uniform()
        publish("latency_search", results, table_md(results))
        return
    if args.report:
        results = json.loads((ROOT / "bench" / "results" / "latency_search.partial.json").read_text())
        results["cells"] = {m: cells for m, cells in results["cells"].items() if len(cells) >= 2}
        results["machine"] = machine()
        publish("latency_search", results, table_md(results))
        return
    N = 2 if args.smoke else args.trials
    MACS_TARGETS = tuple(args.targets[:1] if args.smoke else args.targets)
    results = run(list(range(args.first_seed, args.first_seed + (1 if args.smoke else args.seeds))))
    results["machine"] = machine()
    if args.smoke:
        print(table_md(results))
        return
    _keep_stored_cells(results)
    publish("latency_search", results, table_md(results))


if __name__ == "__main__":
    main()
