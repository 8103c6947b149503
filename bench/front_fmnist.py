"""Front mode on Fashion-MNIST, at equal compute (#16 points 6-7): whose front of accuracy
against MACs is worth more for the same trial-seconds.

Setting: bench.search_fmnist's (ResNet-20 at 16x16, or ``--arch resnet56``; the same
cached baseline, the same brief fine-tune: 1 epoch over 5,400 images after adaptive BN;
val 3,000 images, test the official 10,000). Every method gets the same budget: BUDGET brief fine-tunes at half the
baseline's MACs. A fine-tune is charged its unit cost at its MACs, interpolated between
unit costs timed once per process on a quiet machine (so load cannot tilt the budget); the
sensitivity map is charged at its measured time.

Methods:
  uniform      one keep ratio everywhere, scaled onto MACs targets spread evenly over
               (0, 1): as many targets as the budget pays for (the sweep a user runs by hand)
  adapruner    AdaPruner's allocation at the uniform sweep's targets (one fine-tune each)
  sensitivity  the sensitivity map (2 keep ratios x 2 val batches, the product's default
               map) and its threshold allocation at targets spread evenly, as many as the
               rest of the budget pays for
  random       random per-group ratios and a random MACs target per trial
  fill+sens-cached  sweep 3 of the sensitivity allocation, then fill, its map not charged
               (the map is cached per baseline: every search after the first reads it free)
  default      prunetune's front search as it ships (``mode: front``, every search option
               unset: TPE, ``front_targets``, ``spread``, uniform warm starts 0.5, 0.75, 1.0)
  eagleeye     EagleEye in front mode: random candidates (the random search's draws: a MACs
               target and a keep ratio per group) scored by adaptive BN while half the budget
               lasts; the MACs range cut into bins (as many as half the budget fine-tunes),
               the best-screened candidate of each bin fine-tuned, so a cheap network
               competes only with networks of its own cost

The baseline is a point of every front (1.0x MACs, its own accuracy). Each method's front is
chosen on val (Pareto on val accuracy against MACs); its members, each the network its
trial fine-tuned, are read once on test. Hypervolume over the reference (accuracy 0.1 =
chance, 1.0x MACs), on test accuracy; paired per seed against the uniform sweep. Seeds vary
the samplers, the draws and the fine-tunes' data orders; the baseline is shared.

Run: ``python -m bench.front_fmnist --seeds 5`` (needs ``make fashion-mnist``);
``--seed-range A B`` runs a share of the seeds (two processes can split them), ``--report``
merges what bench/results holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna

from bench import search_fmnist as sf
from bench.report import ROOT, save_seeds, seeds_or_report
from orchestrator.config import SearchSection
from orchestrator.pareto import hypervolume, pareto_front
from orchestrator.searcher import sampler as product_sampler
from orchestrator.searcher import starting_points
from orchestrator.space import (
    SWEEP_TOP,
    TARGET,
    group_ratios,
    search_space,
    snap_target,
    target_distribution,
    variables,
)
from trials.adapruner import allocate as adapruner_allocate
from trials.prune import rebuild
from trials.sensitivity import allocate as sensitivity_allocate
from trials.spec import ChannelSpec
from trials.train import evaluate
from trials.trial import run_trial

ARCH = "resnet20"  # --arch resnet56: the deeper setting (its own baseline, files and section)
NAME = "front_fmnist"
BUDGET = 12  # brief fine-tunes at half the baseline's MACs, per method
UNIT_TARGETS = (0.1, 0.3, 0.5, 0.75, 1.0)  # where a fine-tune's cost is timed
METHODS = (
    "uniform", "adapruner", "sensitivity", "random", "default", "uniform-full", "sweep", "sweep+sens", "fill",
    "fill-half", "fill+sens", "fill+sens-cached", "eagleeye",
)  # fmt: skip
TAG = ""  # --tag: the seed files' suffix
COSTS_FROM = ""  # --costs-from: charge another run's unit costs and map time (not timed again)
ONLY: set[str] = set()  # --methods: run only these (the uniform sweep always runs: the reference)


LABELS = {
    "uniform": "uniform (even sweep, by hand)",
    "default": "tpe (the default before 2026-12-07)",
    "uniform-full": "uniform, spread like search.sweep",
    "sweep": "sweep 6 + tpe",
    "sweep+sens": "sweep 6 of the sensitivity allocation + tpe",
    "fill": "**sweep 3 + fill (the default where no sensitivity map is cached)**",
    "fill-half": "sweep 3 + fill 0.5 (tpe the rest)",
    "fill+sens": "sweep 3 of the sensitivity allocation + fill",
    "fill+sens-cached": "**the same from the sensitivity map, cached (the default where it is)**",
    "eagleeye": "eagleeye (random draws screened by adaptive BN, the best per MACs bin fine-tuned)",
}


def want(method: str) -> bool:
    return not ONLY or method in ONLY


REF = (0.1, 1.0)  # (accuracy, MACs ratio): chance, the baseline
SENS = (2, 2)  # the product's default map: keep ratios per group, val batches of 512


class FrontBench(sf.Bench):
    def __init__(self):
        sf._setting(ARCH, sf.CUTS, *SENS)
        super().__init__()
        self.costs: dict[float, float] = {}
        self.screen_costs: dict[float, float] = {}

    def calibrate_front(self) -> dict[float, float]:
        """A brief fine-tune's seconds at each of UNIT_TARGETS (median of 2, uniform cut)."""
        for t in UNIT_TARGETS:
            self.costs[t] = statistics.median(self.finetune(1.0, t, 0)["wall"] for _ in range(2))
        return self.costs

    def calibrate_screen(self) -> dict[float, float]:
        """An adaptive-BN screening's charge at each of UNIT_TARGETS, as a share of a
        fine-tune's timed beside it (median of 3 each, uniform cut) times the fine-tune's
        charge: a run charging another run's fine-tune costs (``--costs-from``) charges
        screenings in the same units, whatever this machine's speed."""
        for t in UNIT_TARGETS:
            ft = statistics.median(self.finetune(1.0, t, 0)["wall"] for _ in range(3))
            sc = statistics.median(self.screen(1.0, t)["wall"] for _ in range(3))
            self.screen_costs[t] = self.costs[t] * sc / ft
        return self.screen_costs

    def cost(self, target: float, table: dict[float, float] | None = None) -> float:
        """A fine-tune's charge at a MACs target (or a screening's, with ``table``): the
        unit costs, linearly interpolated."""
        costs = self.costs if table is None else table
        xs = sorted(costs)
        t = min(max(target, xs[0]), xs[-1])
        for a, b in zip(xs, xs[1:]):
            if a <= t <= b:
                return costs[a] + (costs[b] - costs[a]) * (t - a) / (b - a)
        return costs[xs[-1]]

    def point(self, ratios, target: float, seed: int) -> dict:
        """One trial in front mode: prune to ``target``, brief fine-tune; its network kept
        (read on test only if it reaches the val front)."""
        r = run_trial(self._cfg(ratios, target, seed, "finetune", sf.FINETUNE))
        return {
            "val": r["val_accuracy"],
            "macs_ratio": r["macs_ratio"],
            "target": target,
            "spec": r["spec"],
            "s": self.cost(target),
            "state": r["state_dict"],
        }

    def test_of(self, row: dict) -> float:
        model = rebuild(sf.ARCH, ChannelSpec.from_dict(row["spec"]), 10, 1, sf.SIZE)
        model.load_state_dict(row["state"])
        return evaluate(model, self.test, sf.CPU)["accuracy"]


def sweep_targets(b: FrontBench, budget: float) -> list[float]:
    """The most MACs targets spread evenly over (0, 1) whose fine-tunes the budget pays for."""
    k = 1
    while sum(b.cost((i + 1) / (k + 2)) for i in range(k + 1)) <= budget:
        k += 1
    return [round((i + 1) / (k + 1), 4) for i in range(k)]


def full_targets(b: FrontBench, budget: float) -> list[float]:
    """As ``sweep_targets``, but spread like ``search.sweep``: from the lowest reachable
    target (keep_min everywhere) to SWEEP_TOP, ends included."""
    low = target_distribution(sf.KEEP_MIN).low

    def spread(k: int) -> list[float]:
        return [snap_target(low + (SWEEP_TOP - low) * i / (k - 1), sf.KEEP_MIN) for i in range(k)]

    k = 2
    while sum(b.cost(t) for t in spread(k + 1)) <= budget:
        k += 1
    return spread(k)


def front_of(b: FrontBench, rows: list[dict], spent: float) -> dict:
    """The val front (the baseline among the points), its members read once on test."""
    base = {"val": b.baseline_val, "macs_ratio": 1.0, "baseline": True}
    pts = rows + [base]
    members = [pts[i] for i in pareto_front([(r["val"], r["macs_ratio"]) for r in pts])]
    for m in members:
        m["test"] = b.baseline_test if m.get("baseline") else b.test_of(m)
    lean = [{k: v for k, v in r.items() if k not in ("state", "spec")} for r in rows]
    return {
        "hv_test": hypervolume([(m["test"], m["macs_ratio"]) for m in members], REF),
        "hv_val": hypervolume([(r["val"], r["macs_ratio"]) for r in pts], REF),
        "size": len(members),
        "trials": len(rows),
        "seconds": spent,
        "front": [{k: m[k] for k in ("val", "test", "macs_ratio")} for m in members],
        "all": lean,
    }


def _section(seed: int, sampler: str, warm: bool, **fields) -> SimpleNamespace:
    """The product's front-mode search section (every option unset but what is named)."""
    fields.update(mode="front", seed=seed, num_trials=BUDGET)
    fields.update(keep_min=sf.KEEP_MIN, keep_max=sf.KEEP_MAX, keep_step=sf.KEEP_STEP)
    if sampler != "tpe":
        fields.update(sampler=sampler, front_targets=True, spread=False)
    if not warm:
        fields["warm_start"] = []
    sec = SearchSection(**fields)
    return SimpleNamespace(search=sec, model=SimpleNamespace(arch=sf.ARCH))


def searched(
    b: FrontBench, seed: int, budget: float, sampler: str, warm: bool, spent: float = 0.0, **fields
) -> tuple[list[dict], float]:
    """The product's front search (its sampler, space, starting points), run until the
    budget leaves no room for the next trial's fine-tune. ``spent``: what the method paid
    before (the sensitivity map)."""
    cfg = _section(seed, sampler, warm, **fields)
    var_map = variables(b.graph.groups, "layer")
    study = optuna.create_study(sampler=product_sampler(cfg), directions=["maximize", "minimize"])
    smap = b.smap()[0] if "sensitivity" in cfg.search.warm_start_methods else None
    base = SimpleNamespace(metrics={"macs": b.macs})
    for _, p in starting_points(cfg, base, b.graph, var_map, smap):
        study.enqueue_trial(p)
    space = search_space(cfg, list(var_map))
    rows = []
    while True:
        t = study.ask(space)
        target = float(t.params[TARGET])
        if rows and spent + b.cost(target) > budget:
            break
        row = b.point(group_ratios(t.params, var_map), target, seed)
        study.tell(t, [row["val"], row["macs_ratio"]])
        rows.append(row)
        spent += row["s"]
    return rows, spent


def eagleeye(b: FrontBench, seed: int, budget: float) -> tuple[list[dict], float, int]:
    """Random candidates scored by adaptive BN while half the budget lasts, then the
    best-screened candidate of each MACs bin fine-tuned. Bins: centred on the targets that
    ``full_targets`` spreads for half the budget (from the lowest reachable target to
    SWEEP_TOP); a candidate belongs to the centre nearest its MACs. A bin nobody drew
    stays empty (its share of the budget unspent)."""
    cfg = _section(seed, "random", warm=False)
    var_map = variables(b.graph.groups, "layer")
    study = optuna.create_study(sampler=product_sampler(cfg), directions=["maximize", "minimize"])
    space = search_space(cfg, list(var_map))
    centres = full_targets(b, budget / 2)
    reserve = sum(b.cost(c) for c in centres)
    spent, screened = 0.0, []
    while True:
        t = study.ask(space)
        target = float(t.params[TARGET])
        charge = b.cost(target, b.screen_costs)
        if spent + charge + reserve > budget:
            break
        ratios = group_ratios(t.params, var_map)
        row = b.screen(ratios, target)
        study.tell(t, [row["val"], row["macs_ratio"]])
        screened.append({"val": row["val"], "macs_ratio": row["macs_ratio"], "ratios": ratios, "target": target})
        spent += charge
    best: dict[float, dict] = {}  # bin centre -> its best-screened candidate
    for r in screened:
        c = min(centres, key=lambda c: abs(c - r["macs_ratio"]))
        if c not in best or r["val"] > best[c]["val"]:
            best[c] = r
    rows = []
    for c in centres:
        if c in best:
            row = b.point(best[c]["ratios"], best[c]["target"], seed)
            rows.append({**row, "screen": best[c]["val"], "bin": c})
            spent += row["s"]
    return rows, spent, len(screened)


def run_seed(b: FrontBench, seed: int, budget: float, map_s: float, say=print) -> dict:
    out: dict = {}
    targets = sweep_targets(b, budget)
    rows = [b.point(1.0, t, seed) for t in targets]
    out["uniform"] = front_of(b, rows, sum(r["s"] for r in rows))
    if want("adapruner"):
        rows = []
        for t in targets:
            kw = {"keep_min": sf.KEEP_MIN, "keep_max": sf.KEEP_MAX, "arch": sf.ARCH}
            spec, _ = adapruner_allocate(b.graph, t * b.macs, **kw)
            rows.append(b.point(b.ratios_of(spec), t, seed))
        out["adapruner"] = front_of(b, rows, sum(r["s"] for r in rows))
    if want("sensitivity"):
        smap, _ = b.smap()
        rest = sweep_targets(b, budget - map_s) if budget - map_s > b.cost(0.5) else [0.5]
        rows = []
        for t in rest:
            spec, _, _ = sensitivity_allocate(b.graph, smap, t * b.macs, keep_min=sf.KEEP_MIN, arch=sf.ARCH)
            rows.append(b.point(b.ratios_of(spec), t, seed))
        out["sensitivity"] = front_of(b, rows, map_s + sum(r["s"] for r in rows))
    if want("random"):
        out["random"] = front_of(b, *searched(b, seed, budget, "random", warm=False))
    if want("default"):
        out["default"] = front_of(b, *searched(b, seed, budget, "tpe", warm=True))
    if want("uniform-full"):
        rows = [b.point(1.0, t, seed) for t in full_targets(b, budget)]
        out["uniform-full"] = front_of(b, rows, sum(r["s"] for r in rows))
    if want("sweep"):
        out["sweep"] = front_of(b, *searched(b, seed, budget, "tpe", warm=True, sweep=BUDGET // 2))
    if want("fill"):  # 3 starting points over the range, then every trial fills the widest gap
        out["fill"] = front_of(b, *searched(b, seed, budget, "tpe", True, sweep=3, fill=1.0))
    if want("fill-half"):  # ... every other trial fills, TPE proposes the rest
        out["fill-half"] = front_of(b, *searched(b, seed, budget, "tpe", True, sweep=3, fill=0.5))
    fill_sens = {"sweep": 3, "fill": 1.0, "warm_start_methods": ["sensitivity"]}
    if want("fill+sens"):  # the sensitivity allocation at the 3 starting points, its shapes carried by fill
        out["fill+sens"] = front_of(b, *searched(b, seed, budget, "tpe", True, map_s, **fill_sens))
    if want("fill+sens-cached"):  # the map is cached per baseline: a later search reads it free
        out["fill+sens-cached"] = front_of(b, *searched(b, seed, budget, "tpe", True, 0.0, **fill_sens))
    if want("sweep+sens"):
        fields = {"sweep": BUDGET // 2, "warm_start_methods": ["sensitivity"]}
        out["sweep+sens"] = front_of(b, *searched(b, seed, budget, "tpe", True, map_s, **fields))
    if want("eagleeye"):
        rows, spent, screened = eagleeye(b, seed, budget)
        out["eagleeye"] = {**front_of(b, rows, spent), "screened": screened}
    say(
        f"seed {seed}: "
        + ", ".join(f"{k} HV {v['hv_test']:.4f} ({v['trials']} trials, front {v['size']})" for k, v in out.items())
    )
    return out


def run(seeds: list[int], say=print) -> dict:
    t0 = time.perf_counter()
    b = FrontBench()
    say(f"baseline: val {b.baseline_val:.4f}, test {b.baseline_test:.4f}, MACs {b.macs / 1e6:.2f} M")
    _, map_s = b.smap()  # timed first, on a quiet machine, like the unit costs
    if COSTS_FROM:  # another run's charges: the same budget, so the same uniform sweep to pair with
        stored = json.loads(Path(COSTS_FROM).read_text())
        b.costs, map_s = {float(k): v for k, v in stored["costs"].items()}, stored["map_seconds"]
    costs = b.costs or b.calibrate_front()
    budget = BUDGET * b.cost(0.5)
    say(f"sensitivity map {map_s:.0f} s; fine-tune seconds by MACs target {costs}; budget {budget:.0f} s")
    if want("eagleeye"):  # screenings are charged only where EagleEye runs
        say(f"adaptive-BN screening charged by MACs target {b.calibrate_screen()}")
    results = {"budget": budget, "costs": {str(k): v for k, v in costs.items()}, "map_seconds": map_s,
               "screen_costs": {str(k): v for k, v in b.screen_costs.items()},
               "baseline_val": b.baseline_val, "baseline_test": b.baseline_test,
               "sweep": sweep_targets(b, budget), "seeds": {}}  # fmt: skip
    for seed in seeds:
        results["seeds"][str(seed)] = run_seed(b, seed, budget, map_s, say)
        _save(results, seeds)
    results["seconds"] = time.perf_counter() - t0
    return results


def _save(results: dict, seeds) -> None:
    save_seeds(NAME, results, seeds, TAG)


def merge() -> dict:
    merged: dict = {"seeds": {}, "calibrations": []}
    for p in sorted((ROOT / "bench" / "results").glob(f"{NAME}.seeds-*.json")):
        data = json.loads(p.read_text())
        for k, v in data.items():
            if k != "seeds":
                merged.setdefault(k, v)
        merged["calibrations"].append({k: data[k] for k in ("budget", "costs", "map_seconds")})
        for seed, methods in data["seeds"].items():  # runs of other methods on the same seeds join
            have = merged["seeds"].setdefault(seed, {})
            if "uniform" in have and abs(have["uniform"]["hv_test"] - methods["uniform"]["hv_test"]) > 1e-9:
                raise SystemExit(f"{p.name}: seed {seed}'s uniform sweep differs from the other file's: not paired")
            have.update(methods)
    return merged


def table(results: dict) -> str:
    """The section of this run's results (bench/fmnist_tables.py)."""
    return sf.tables.front_table(results, sys.modules[__name__])


def main() -> None:
    global ARCH, NAME, TAG, COSTS_FROM
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed-range", type=int, nargs=2, metavar=("FIRST", "LAST"))
    parser.add_argument("--report", action="store_true", help="merge the seed files in bench/results and publish")
    parser.add_argument("--arch", default=ARCH, choices=["resnet20", "resnet56"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="run only these (and the uniform sweep)")
    parser.add_argument("--costs-from", help="a seed file whose unit costs and map time to charge (paired runs)")
    parser.add_argument("--tag", default="", help="the seed files' suffix (a run of other methods on the same seeds)")
    parser.add_argument("--name", help="the seed files' and the docs section's name (a run on a baseline of its own)")
    args = parser.parse_args()
    ONLY.update(args.methods or ())
    COSTS_FROM = args.costs_from or ""
    TAG = f".{args.tag}" if args.tag else ""
    ARCH, NAME = args.arch, "front_fmnist" if args.arch == "resnet20" else f"front_fmnist_{args.arch}"
    NAME = args.name or NAME
    seeds_or_report(args, NAME, run, _save, merge, table)


if __name__ == "__main__":
    main()
