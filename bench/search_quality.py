"""Search quality: do searched per-layer counts beat pruning every layer alike?

Setting, chosen so that allocations can matter more than seed noise: ResNet-56 (27 blocks,
30 channel groups) on the digits data at 16x16 (the images are 8x8, so nothing is lost),
trained on a quarter of the training split (286 images; the 287-image val split is
unchanged). The baseline reaches about 90% val accuracy, and a uniform cut costs 13 to 43
points after the brief fine-tune, so there is room for an allocation to win or lose.

For each seed (baseline init, fine-tune order and sampler seed) and each MACs cut
(50%, 75%, 90%, budget mode: every configuration is scaled onto the target):
  (a) uniform: one ratio everywhere, scaled onto the target, one trial;
  (b) best of random search: N trials of Optuna's RandomSampler, no warm start;
  (c) prunetune's search: N trials of each sampler (tpe, nsga2) as ``prunetune search``
      builds it: same space (one keep ratio per layer group), same sampler settings, and
      the default uniform warm start first.
The winner of each search is chosen on val accuracy (as the search does) and reported by
its accuracy on the held-out test split (360 images), which nothing selects on. Front mode
(no target): N trials per sampler, N trials of tpe and nsga2 with ``search.front_targets``
(a MACs target sampled per trial), and N uniform levels; the hypervolume of each val front
over the reference point (10% accuracy = chance, 1.0x MACs), with the front members'
test accuracies (and their val accuracies, for comparison).

Trials run in this process one after another (``trials.run_trial``, the function Ray Tune
calls), told to the sampler as soon as they end; a search on Ray proposes the same way but
with ``max_concurrent`` trials in flight. Run: ``python -m bench.search_quality``
(about 45 min for 3 seeds on 2 CPU cores, front_targets variants included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import torch

from bench.report import ROOT, machine, publish
from orchestrator.config import SearchSection
from orchestrator.pareto import hypervolume, pareto_front
from orchestrator.searcher import sampler as _sampler
from orchestrator.space import (
    TARGET,
    grid,
    group_ratios,
    search_space,
    variables,
    warm_levels,
    warm_start_points,
    with_spread,
    with_targets,
)
from trials.baseline import ModelInfo, train_baseline
from trials.data import DataConfig, load_test, load_train_val
from trials.groups import build_graph
from trials.prune import rebuild
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig, evaluate
from trials.trial import TrialConfig, run_trial

ARCH, SIZE = "resnet56", 16
DATA = DataConfig(name="digits", val_fraction=0.2, image_size=SIZE, train_fraction=0.25, batch_size=32)
BASELINE = {"epochs": 40, "lr": 0.05}
FINETUNE = {"epochs": 2, "lr": 0.01}  # 18 steps of batch 32
ADAPTIVE_BN = 10
CUTS = (0.5, 0.75, 0.9)  # fraction of MACs removed
KEEP_MIN, KEEP_MAX, KEEP_STEP = 0.1, 1.0, 0.05
SAMPLERS = ("random", "tpe", "nsga2")
# front mode with search.front_targets (a MACs target sampled per trial): sampler, and
# whether search.spread (how far the ratios depart from uniform) is a variable too
FRONT_VARIANTS = {"tpe+targets": ("tpe", False), "nsga2+targets": ("nsga2", False), "tpe+targets+spread": ("tpe", True)}
WARM_START = [0.5, 0.75, 1.0]  # SearchSection's default
REF = (0.1, 1.0)  # (accuracy, MACs ratio): chance, the baseline
CPU = torch.device("cpu")
optuna.logging.set_verbosity(optuna.logging.WARNING)


class Bench:
    def __init__(self, seed: int):
        self.seed = seed
        self.info = ModelInfo(ARCH, 10, 1, SIZE)
        ft = FinetuneConfig(**BASELINE, seed=seed)
        model, _ = train_baseline(self.info, DATA, ft, "cpu", log=None)
        self.baseline_val = evaluate(model, load_train_val(DATA).val, CPU)["accuracy"]
        self.state = {k: v.clone() for k, v in model.state_dict().items()}
        self.graph = graph = build_graph(model, (1, SIZE, SIZE), ARCH)
        self.var_map = variables(graph.groups, "layer")
        self.names = list(self.var_map)
        self.test = load_test(DATA)

    def trial(self, keep, macs_target: float | None) -> dict:
        r = run_trial(
            TrialConfig(
                arch=ARCH,
                baseline=self.state,
                data=DATA,
                keep=keep,
                target=macs_target,
                keep_min=KEEP_MIN,
                keep_max=KEEP_MAX,
                adaptive_bn_batches=ADAPTIVE_BN,
                finetune=FinetuneConfig(**FINETUNE, seed=self.seed),
                device="cpu",
            )
        )
        model = rebuild(ARCH, ChannelSpec.from_dict(r["spec"]), 10, 1, SIZE)
        model.load_state_dict(r["state_dict"])
        test = evaluate(model, self.test, CPU)["accuracy"]
        return {
            "val": r["val_accuracy"],
            "test": test,
            "macs_ratio": r["macs_ratio"],
            "seconds": r["trial_seconds"],
            "spec": r["spec"],
        }

    def search(
        self, sampler: str, n: int, cut: float | None, targets: bool = False, spread: bool = False
    ) -> list[dict]:
        """``n`` trials proposed by ``sampler`` (budget mode at ``cut``, front mode at None;
        ``targets``: front mode with a MACs target sampled per trial; ``spread``: and how far
        its ratios depart from uniform)."""
        budget = cut is not None
        sec = SearchSection(
            mode="budget" if budget else "front",
            macs_target=1 - cut if budget else None,
            sampler=sampler,
            num_trials=n,
            seed=self.seed,
            keep_min=KEEP_MIN,
            keep_max=KEEP_MAX,
            keep_step=KEEP_STEP,
            warm_start=WARM_START if sampler != "random" else [],
            front_targets=targets,
            spread=spread,
        )
        cfg = SimpleNamespace(search=sec, model=SimpleNamespace(arch=ARCH))
        study = optuna.create_study(
            sampler=_sampler(cfg),
            directions=["maximize"] if budget else ["maximize", "minimize"],
        )
        warm = warm_start_points(self.names, warm_levels(sec), KEEP_MIN, KEEP_MAX, KEEP_STEP)
        for point in with_targets(cfg, self.graph, self.var_map, with_spread(cfg, warm)):
            study.enqueue_trial(point)
        space = search_space(cfg, self.names)
        rows = []
        for i in range(n):
            t = study.ask(space)
            row = self.trial(group_ratios(t.params, self.var_map), t.params.get(TARGET, sec.macs_target))
            study.tell(t, row["val"] if budget else [row["val"], row["macs_ratio"]])
            rows.append({**row, "warm_start": i < len(warm_levels(sec))})
        return rows


def _lean(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "spec"}


def _best(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: r["val"])  # selection on val, as the search ranks


def _front(rows: list[dict]) -> dict:
    idx = pareto_front([(r["val"], r["macs_ratio"]) for r in rows])
    members = [rows[i] for i in idx]
    return {
        "hv_test": hypervolume([(r["test"], r["macs_ratio"]) for r in members], REF),
        "hv_val": hypervolume([(r["val"], r["macs_ratio"]) for r in rows], REF),
        "size": len(members),
    }


def run(seeds: list[int], n: int, say=print, partial: Path | None = None) -> dict:
    results: dict = {"trials_per_search": n, "seeds": []}
    for seed in seeds:
        t0 = time.perf_counter()
        b = Bench(seed)
        say(f"seed {seed}: baseline val {b.baseline_val:.4f} ({time.perf_counter() - t0:.0f} s)")
        out: dict = {"seed": seed, "baseline_val": b.baseline_val, "budget": {}, "front": {}}
        for cut in CUTS:
            cell = {"uniform": {**b.trial(1.0, 1 - cut), "trials": 1}}
            for sampler in SAMPLERS:
                rows = b.search(sampler, n, cut)
                best = _best(rows)  # its counts are kept (bench.speedup times them)
                cell[sampler] = {**best, "trials": n, "all": [_lean(r) for r in rows]}
            out["budget"][f"{cut:.2f}"] = cell
            say(
                f"seed {seed} cut {cut:.0%}: "
                + ", ".join(f"{k} test {v['test']:.3f} (val {v['val']:.3f})" for k, v in cell.items())
            )
        levels = grid(KEEP_MIN, KEEP_MAX, KEEP_STEP)
        picks = [levels[round(i * (len(levels) - 1) / (n - 1))] for i in range(n)]
        uniform = [_lean(b.trial(lv, None)) for lv in dict.fromkeys(picks)]
        out["front"]["uniform"] = {**_front(uniform), "all": uniform}
        for sampler in SAMPLERS:
            rows = [_lean(r) for r in b.search(sampler, n, None)]
            out["front"][sampler] = {**_front(rows), "all": rows}
        say(f"seed {seed} front: " + ", ".join(f"{k} HV {v['hv_test']:.4f}" for k, v in out["front"].items()))
        out["seconds"] = time.perf_counter() - t0
        results["seeds"].append(out)
        if partial:
            partial.write_text(json.dumps(results))
    return results


def add_front_variants(results: dict, say=print, again: tuple[str, ...] = ()) -> dict:
    """Run the FRONT_VARIANTS that ``results`` lacks (and those named in ``again``) for
    every seed and add them to its front section. The baselines are retrained: seeded, they
    come out the same on the same torch; where one does not, say so (the stored methods of
    that seed are then not paired with the new rows: name them in ``again`` to pair them)."""
    n = results["trials_per_search"]
    for out in results["seeds"]:
        t0 = time.perf_counter()
        b = Bench(out["seed"])
        if abs(b.baseline_val - out["baseline_val"]) > 1e-9:
            say(f"seed {out['seed']}: baseline val {b.baseline_val:.4f}, stored {out['baseline_val']:.4f}")
        for name, (sampler, spread) in FRONT_VARIANTS.items():
            if name in out["front"] and name not in again:
                continue
            rows = [_lean(r) for r in b.search(sampler, n, None, targets=True, spread=spread)]
            out["front"][name] = {**_front(rows), "all": rows}
            say(f"seed {out['seed']} front {name}: HV {out['front'][name]['hv_test']:.4f}")
        out["seconds"] += time.perf_counter() - t0
    return results


def _ms(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * sd:.{digits}f}"


def _budget_rows(seeds: list, methods: tuple, label: dict) -> list[str]:
    """Budget mode's rows: each method's test accuracy per cut (Δ to uniform), then its val."""
    lines: list[str] = []
    for m in methods:
        cells = []
        for c in CUTS:
            key = f"{c:.2f}"
            acc = [s["budget"][key][m]["test"] for s in seeds]
            cell = _ms(acc)
            if m != "uniform":
                delta = [s["budget"][key][m]["test"] - s["budget"][key]["uniform"]["test"] for s in seeds]
                cell += f" (Δ {_ms(delta)})"
            cells.append(cell)
        lines.append(f"| {label[m]} | " + " | ".join(cells) + " |")
    lines += ["", "The winners' val accuracy (what the search ranked on; in %):", ""]
    lines += ["| method | " + " | ".join(f"{c:.0%}" for c in CUTS) + " |", "|---|" + "---|" * len(CUTS)]
    for m in methods:
        cells = [_ms([s["budget"][f"{c:.2f}"][m]["val"] for s in seeds]) for c in CUTS]
        lines.append(f"| {label[m]} | " + " | ".join(cells) + " |")
    return lines


def _front_rows(seeds: list, front_label: dict) -> list[str]:
    """Front mode's rows: each method's hypervolume on test (Δ to uniform) and val, front size."""
    lines: list[str] = []
    for m in [m for m in front_label if all(m in s["front"] for s in seeds)]:
        f = [s["front"][m] for s in seeds]
        delta = [s["front"][m]["hv_test"] - s["front"]["uniform"]["hv_test"] for s in seeds]
        hv = _ms([x["hv_test"] for x in f], digits=2) + ("" if m == "uniform" else f" (Δ {_ms(delta, digits=2)})")
        lines.append(
            f"| {front_label[m]} | {hv} | {_ms([x['hv_val'] for x in f], digits=2)} | "
            f"{statistics.mean(x['size'] for x in f):.1f} |"
        )
    return lines


def table(results: dict) -> str:
    seeds, n = results["seeds"], results["trials_per_search"]
    methods = ("uniform",) + SAMPLERS
    label = {
        "uniform": "(a) uniform",
        "random": f"(b) best of {n} random",
        "tpe": f"(c) prunetune, tpe, {n} trials",
        "nsga2": f"(c) prunetune, nsga2, {n} trials",
    }
    front_label = {"uniform": "(a) uniform", "random": "(b) random", "tpe": "(c) tpe", "nsga2": "(c) nsga2"}
    front_label.update(
        {k: f"(c) {v}, front_targets" + (", spread" if spread else "") for k, (v, spread) in FRONT_VARIANTS.items()}
    )
    base = [s["baseline_val"] for s in seeds]
    lines = [
        "## Search quality: searched per-layer counts against uniform pruning",
        "",
        f"`python -m bench.search_quality`. Setting: ResNet-56 on the digits data at {SIZE}x{SIZE}, trained on a quarter of the training split "
        f"(286 images, {BASELINE['epochs']} epochs; baseline val accuracy {_ms(base)}%); every pruned network "
        f"gets the same brief fine-tune ({FINETUNE['epochs']} epochs, 18 steps, lr {FINETUNE['lr']}, adaptive BN "
        f"first); keep ratios per layer group in [{KEEP_MIN}, {KEEP_MAX}] step {KEEP_STEP}. Winners are chosen "
        "on val accuracy; the tables give their **test** accuracy (360 held-out images). "
        f"Mean ± sd over {len(seeds)} seeds; Δ is the paired difference to uniform on the same baseline. "
        "The samplers of one seed share their random draws (TPE's first 10 trials and NSGA-II's first "
        "generation are the random sampler's, after the uniform warm start), so (b) and (c) differ only "
        "by what the guided trials found.",
        f"Machine: {results['machine']}; {results['date']}; {results['seconds'] / 60:.0f} min.",
        "",
        "Budget mode (test accuracy in %, Δ in points):",
        "",
        "| method | " + " | ".join(f"{c:.0%} MACs cut" for c in CUTS) + " |",
        "|---|" + "---|" * len(CUTS),
    ]
    lines += _budget_rows(seeds, methods, label)
    won_by_uniform = {
        m: sum(_best(s["budget"][f"{c:.2f}"][m]["all"])["warm_start"] for s in seeds for c in CUTS)
        for m in ("tpe", "nsga2")
    }
    total = len(seeds) * len(CUTS)
    lines += [
        "",
        "Searches whose winner is the uniform warm start: "
        + ", ".join(f"{m} {k} of {total}" for m, k in won_by_uniform.items())
        + ".",
        "",
        f"Front mode ({n} trials each; uniform: {n} levels from {KEEP_MIN} to {KEEP_MAX}). Hypervolume "
        f"over the reference (accuracy {REF[0]}, MACs {REF[1]}x), x100:",
        "",
        "| method | HV, test accuracy of the val front (Δ to uniform) | HV, val accuracy | front size |",
        "|---|---|---|---|",
    ]
    lines += _front_rows(seeds, front_label)
    secs = [r["seconds"] for s in seeds for c in s["budget"].values() for m in SAMPLERS for r in c[m]["all"]]
    lines += ["", f"Trial time: {statistics.median(secs):.1f} s median (prune, adaptive BN, fine-tune, evaluate)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24, help="trials per search (and uniform front levels)")
    parser.add_argument(
        "--front-variants-only",
        action="store_true",
        help="only run the front_targets variants it lacks, added to bench/results/search_quality.json",
    )
    parser.add_argument(
        "--again", nargs="*", default=[], choices=list(FRONT_VARIANTS), help="with --front-variants-only: run these too"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    partial = ROOT / "bench" / "results" / "search_quality.partial.json"
    if args.front_variants_only:
        stored = json.loads((ROOT / "bench" / "results" / "search_quality.json").read_text())
        results = add_front_variants(stored, again=tuple(args.again))
        results["seconds"] += time.perf_counter() - t0
        publish("search_quality", results, table(results))
        return
    results = run(list(range(args.seeds)), args.trials, partial=partial)
    results = add_front_variants(results)
    results["seconds"] = time.perf_counter() - t0
    results["machine"] = machine()
    results["date"] = time.strftime("%Y-%m-%d")
    publish("search_quality", results, table(results))
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
