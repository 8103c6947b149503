"""Paired per-seed report of one cut from bench.search_fmnist seed files (several runs of
the same setting, merged): prunetune's default in budget mode on MACs (the better on val
of the uniform cut and the sensitivity allocation) against every method, test points.

Run: ``python -m bench.paired_cut --cut 0.75 --name search_fmnist_resnet56_cut75 FILE ...``
(the seed files of ``python -m bench.search_fmnist --arch resnet56 --cuts 0.75
--sens-levels 2 --sens-val-batches 2 --seed-range A B``). Writes bench/results/NAME.json
and the section NAME of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench.report import publish

METHODS = ("uniform", "adapruner", "random", "eagleeye", "stage-tpe", "stage-screen", "sensitivity", "tpe+sens")


def _ms(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):+.2f} ± {100 * sd:.2f}"


def report(files: list[Path], cut: float) -> tuple[dict, str]:
    key, seeds, runs = f"{cut:.2f}", {}, []
    for path in files:
        data = json.loads(Path(path).read_text())
        runs.append({k: data[k] for k in ("budgets_by_cut", "map_seconds", "units") if k in data} | {"file": str(path)})
        for seed, cells in data["seeds"].items():
            if key in cells:
                seeds[seed] = {m: {k: v for k, v in r.items() if k != "spec"} for m, r in cells[key].items()}
    order = sorted(seeds, key=int)
    picks, deltas = [], {m: [] for m in METHODS}
    for sd in order:
        cell = seeds[sd]
        best = max((cell["uniform"], cell["sensitivity"]), key=lambda r: r["val"])
        picks.append(best is cell["sensitivity"])
        for m in METHODS:
            deltas[m].append(best["test"] - cell[m]["test"])
    lines = [
        f"Δ = the default minus the method, test points, {len(order)} seeds (paired: same baseline, seed and data orders).",
        "",
        "| method | method's test (mean) | Δ (mean ± sd) | default ahead |",
        "|---|---:|---:|---:|",
    ]
    for m in METHODS:
        mean = statistics.mean(seeds[sd][m]["test"] for sd in order)
        ahead = sum(d > 0 for d in deltas[m])
        lines.append(f"| {m} | {100 * mean:.2f} | {_ms(deltas[m])} | {ahead}/{len(order)} |")
    lines += ["", f"The default picked the sensitivity allocation on val in {sum(picks)} of {len(order)} seeds."]
    results = {"cut": cut, "runs": runs, "seeds": seeds, "picked_sensitivity": picks,
               "deltas": {m: d for m, d in deltas.items()}}  # fmt: skip
    return results, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--cut", type=float, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    results, text = report(args.files, args.cut)
    publish(args.name, results, text)


if __name__ == "__main__":
    main()
