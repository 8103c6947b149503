"""The tables of the Fashion-MNIST benchmarks: bench/search_fmnist.py's results per method
and cut and prunetune's default paired against every method, and bench/front_fmnist.py's
fronts. ``st`` is the setting a table describes: the benchmark's module once its command
line set it (network, cuts, map, methods, names)."""

from __future__ import annotations

import statistics


def mean_sd(xs: list[float], scale: float = 100.0, digits: int = 2) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{scale * statistics.mean(xs):.{digits}f} ± {scale * sd:.{digits}f}"


def map_label(st) -> str:
    return (
        ""
        if (st.SENS_LEVELS, st.SENS_VAL_BATCHES) == (4, 16)
        else f", sensitivity map {st.SENS_LEVELS}x{st.SENS_VAL_BATCHES}"
    )


def flags(st) -> str:
    out = "" if st.ARCH == "resnet20" else f" --arch {st.ARCH}"
    out += "" if st.CUTS == (0.75, 0.9) else f" --cuts {' '.join(map(str, st.CUTS))}"
    if (st.SENS_LEVELS, st.SENS_VAL_BATCHES) != (4, 16):
        out += f" --sens-levels {st.SENS_LEVELS} --sens-val-batches {st.SENS_VAL_BATCHES}"
    return out + (f" --methods {' '.join(sorted(st.ONLY))}" if st.ONLY else "")


def table(results: dict, st, default: str | None = None) -> str:
    default = default or st.DEFAULT
    seeds = results["seeds"]
    n = len(seeds)
    methods = [
        m for m in st.METHODS + st.STAGE_METHODS if all(m in s[f"{c:.2f}"] for s in seeds.values() for c in st.CUTS)
    ]
    lines = [
        f"## Search quality on Fashion-MNIST, at equal compute ({st.ARCH}{map_label(st)})",
        "",
        f"`python -m bench.search_fmnist --seeds 5{flags(st)}` (after `make fashion-mnist`). {st.ARCH} on Fashion-MNIST at "
        f"{st.SIZE}x{st.SIZE}; one baseline ({st.BASELINE['epochs']} epochs on 27,000 training images; val "
        f"{100 * results['baseline_val']:.2f}%, test {100 * results['baseline_test']:.2f}%). Every method spends the "
        f"same compute per cut: {st.BUDGET} brief fine-tunes' worth (1 epoch over 5,400 images after adaptive BN; "
        + ", ".join(f"{c:.0%} cut {results['budgets_by_cut'][f'{c:.2f}']:.0f} s" for c in st.CUTS)
        + "). Every operation is charged its unit cost, timed once per process on a quiet machine (a brief "
        "fine-tune, an adaptive-BN screening: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in results["units"].items())
        + f"), so a busy machine cannot change what a method gets; the sensitivity map ({results['map_seconds']:.0f} s, "
        f"{st.SENS_LEVELS} keep ratios "
        f"per group, scored on the val split) is charged in full to every method that reads it. "
        "Each method's winner is chosen on val accuracy (3,000 images), fine-tuned again for "
        f"{st.FINAL['epochs']} epochs with a data order no search saw, and read once on the 10,000 test images. "
        f"Mean ± sd over {n} seeds (sampler, draws and data orders; the baseline is shared); Δ: paired difference "
        f"to **{default}** (positive: the method is ahead), and in how many seeds the method is ahead.",
        f"Machine: {results.get('machine', '?')}; {results.get('date', '?')}; one thread per process.",
        "",
        "| method | "
        + " | ".join(f"test, {c:.0%} cut | Δ to {default} | ahead" for c in st.CUTS)
        + " | configurations tried |",
        "|---|" + "---|---|---|" * len(st.CUTS) + "---|",
    ]
    for m in methods:
        cells = []
        for c in st.CUTS:
            key = f"{c:.2f}"
            acc = [s[key][m]["test"] for s in seeds.values()]
            delta = [s[key][m]["test"] - s[key][default]["test"] for s in seeds.values()]
            ahead = f"{sum(d > 0 for d in delta)}/{n}"
            cells += [mean_sd(acc), "" if m == default else mean_sd(delta), "" if m == default else ahead]
        tried = statistics.mean(s[f"{c:.2f}"][m]["tried"] for s in seeds.values() for c in st.CUTS)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {tried:.0f} |")
    lines += ["", "Val accuracy of the winners (what each method selected on), in %:", ""]
    lines += ["| method | " + " | ".join(f"{c:.0%} cut" for c in st.CUTS) + " |", "|---|" + "---|" * len(st.CUTS)]
    for m in methods:
        lines.append(
            f"| {m} | " + " | ".join(mean_sd([s[f"{c:.2f}"][m]["val"] for s in seeds.values()]) for c in st.CUTS) + " |"
        )
    spent = [
        s[f"{c:.2f}"][m]["seconds"]
        for s in seeds.values()
        for c in st.CUTS
        for m in ("random", "eagleeye", "tpe+sens", "screened", "stage-tpe", "stage-screen")
        if m in s[f"{c:.2f}"]
    ]
    charged = {
        m: statistics.mean(s[f"{c:.2f}"][m]["seconds"] for s in seeds.values() for c in st.CUTS) for m in methods
    }
    lines += ["", "Seconds charged per method (mean over seeds and cuts): "
              + ", ".join(f"{m} {v:.0f}" for m, v in charged.items()) + "."]  # fmt: skip
    if spent:
        lines.append(f"Seconds charged to the budgeted methods: {min(spent):.0f} to {max(spent):.0f}.")
    return "\n".join(lines)


def default_table(st, levels: int = 2, val_batches: int = 2) -> str:
    """prunetune's default in budget mode on MACs, per seed and cut: the uniform cut and the
    sensitivity allocation (the default map: ``levels`` x ``val_batches``) both fine-tuned,
    the better on val kept; paired against every method of the full run (same baseline,
    seeds and data orders: the uniform rows of both runs are identical, checked)."""
    cheap, full = st.merge(f"{st.NAME}_map{levels}x{val_batches}"), st.merge(st.NAME)
    seeds = sorted(set(cheap["seeds"]) & set(full["seeds"]), key=int)
    lines = [
        f"prunetune's default ({st.ARCH}, map {levels} ratios x {val_batches} val batches of 512, "
        f"{len(seeds)} seeds paired with the full run): Δ = default minus the method, test points.",
        "",
        "| cut | method | Δ (mean ± sd) | default ahead | default picked sensitivity |",
        "|---|---|---|---|---|",
    ]
    for c in st.CUTS:
        key = f"{c:.2f}"
        picks, rows = [], {}
        for sd in seeds:
            a, b = cheap["seeds"][sd][key], full["seeds"][sd][key]
            if abs(a["uniform"]["test"] - b["uniform"]["test"]) > 1e-9:
                raise SystemExit(f"seed {sd}: the two runs' uniform rows differ: not paired")
            best = max((a["uniform"], a["sensitivity"]), key=lambda r: r["val"])
            picks.append(best is a["sensitivity"])
            for m, r in b.items():
                rows.setdefault(m, []).append(best["test"] - r["test"])
        for m, d in rows.items():
            label = (
                f"{m} (map {st.SENS_LEVELS}x{st.SENS_VAL_BATCHES})"
                if m in ("sensitivity", "tpe+sens", "screened")
                else m
            )
            lines.append(
                f"| {c:.0%} | {label} | {mean_sd(d)} | {sum(x > 0 for x in d)}/{len(d)} | {sum(picks)}/{len(picks)} |"
            )
    return "\n".join(lines)


def _own_name(st) -> bool:
    """A run under a name of its own (``--name``), not its network's default."""
    return st.NAME not in ("front_fmnist", f"front_fmnist_{st.ARCH}")


def _own(st, seeds: list[dict]) -> str:
    """A run under a name of its own: its name and methods, as the command line gave them."""
    if not _own_name(st):
        return ""
    return f" --name {st.NAME} --methods " + " ".join(m for m in st.METHODS if m != "uniform" and m in seeds[0])


def front_table(results: dict, st) -> str:
    """bench/front_fmnist.py's section: ``st`` is that module once its ``main`` set the run."""
    seeds = list(results["seeds"].values())
    n = len(seeds)
    ms = mean_sd
    lines = [
        f"## Front mode on Fashion-MNIST, at equal compute ({st.ARCH}"
        + (f", run {st.NAME}" if _own_name(st) else "")
        + ")",
        "",
        f"`python -m bench.front_fmnist --seeds {n}{'' if st.ARCH == 'resnet20' else ' --arch ' + st.ARCH}{_own(st, seeds)}` (after "
        f"`make fashion-mnist`). {st.ARCH} on Fashion-MNIST at 16x16, bench.search_fmnist's baseline (val {100 * results['baseline_val']:.2f}%, test "
        f"{100 * results['baseline_test']:.2f}%). Every method spends the same trial-seconds: {st.BUDGET} brief "
        f"fine-tunes at half the MACs ({results['budget']:.0f} s); each fine-tune is charged the unit cost at its "
        "MACs (timed once per process, seconds by MACs target: "
        + ", ".join(f"{k} {v:.1f}" for k, v in results["costs"].items())
        + f"); the sensitivity map (2 keep ratios x 2 val batches, the product's default) costs "
        f"{results['map_seconds']:.0f} s, charged to the method that reads it. The uniform sweep's targets: "
        + ", ".join(f"{t:.2f}" for t in results["sweep"])
        + ". Each front is chosen on val (the baseline is a point of every front, at 1.0x MACs); its members "
        "are read once on the 10,000 test images. Hypervolume over (accuracy 0.1, 1.0x MACs), x100, mean ± sd over "
        f"{n} seeds; Δ: paired difference to the uniform sweep (positive: ahead), and in how many seeds.",
        f"Machine: {results.get('machine', '?')}; {results.get('date', '?')}; one thread per process.",
        "",
        "| method | HV, test accuracy of the val front | Δ to uniform | ahead | HV, val | trials | front size |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in st.METHODS:
        if not all(m in s for s in seeds):
            continue
        hv = [s[m]["hv_test"] for s in seeds]
        label = st.LABELS.get(m, m)
        d = [s[m]["hv_test"] - s["uniform"]["hv_test"] for s in seeds]
        ahead = "" if m == "uniform" else f"{sum(x > 0 for x in d)}/{n}"
        lines.append(
            f"| {label} | {ms(hv)} | {'' if m == 'uniform' else ms(d)} | {ahead} | "
            f"{ms([s[m]['hv_val'] for s in seeds])} | {statistics.mean(s[m]['trials'] for s in seeds):.1f} | "
            f"{statistics.mean(s[m]['size'] for s in seeds):.1f} |"
        )
    return "\n".join(lines)
