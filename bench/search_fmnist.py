"""Search quality on a real dataset, at equal compute: Fashion-MNIST, ResNet-20.

Setting (tractable on 2 CPU cores, one thread per process): images at 16x16 (bilinear
from 28x28); one baseline, trained once on half the training images (27,000, 8 epochs)
and cached under runs/bench/; the val split (5% of the 60,000 training images, 3,000) is
what every method selects on; the official 10,000 test images are read only to report.
Every pruned network gets the same brief fine-tune (1 epoch over a tenth of the training
split, 5,400 images, after adaptive BN). Budget mode: every configuration is scaled onto
the MACs target (25% and 10% of the baseline's MACs: 75% and 90% cuts).

Methods, each with the same compute: a budget of trial-seconds (BUDGET brief fine-tunes'
worth), spent as each method spends it; every operation is charged its unit cost (a
brief fine-tune, an adaptive-BN screening, timed once per process before the methods
run; the sensitivity map at its measured time), so machine load cannot tilt the budget:
  uniform      one ratio everywhere (one fine-tune; more compute does not change it)
  adapruner    AdaPruner's allocation from BN importance (one fine-tune)
  sensitivity  the per-group sensitivity map (its cost counted) and one global threshold
               bisected onto the target (NVIDIA ModelOpt FastNAS / AIMET style), one fine-tune
  random       random per-group ratios, each fine-tuned, best val
  eagleeye     random candidates scored by adaptive BN (EagleEye), the best TOP fine-tuned
  tpe+sens     prunetune's search as it runs today with ``sampler: tpe`` and
               ``warm_start_methods: [sensitivity]``: the map, then TPE, every trial fine-tuned
  screened     the candidate default: the map, then TPE in a space around the sensitivity
               allocation (a multiplicative offset per group), candidates scored by adaptive
               BN, the best TOP fine-tuned
  stage-tpe    prunetune's search with ``granularity: stage`` (one keep ratio per stage, 3
               variables for ResNet-20), ``sampler: tpe``, uniform first, every trial fine-tuned
  stage-screen the same space with ``search.screen``: candidates scored by adaptive BN, the
               best TOP fine-tuned
The winner of each method is chosen on val accuracy, then fine-tuned again (FINAL epochs,
a data order no search saw) and scored once on the test split. Seeds vary the samplers,
the random draws and the fine-tunes' data orders; the baseline is shared. Deltas are
paired per seed. Run: ``python -m bench.search_fmnist --seeds 5`` (needs
``make fashion-mnist``); ``--seed-range A B`` runs a share of the seeds, so two
processes can split them, and ``--report`` merges what bench/results holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import optuna
import torch

from bench import fmnist_tables as tables
from bench.report import ROOT, save_seeds, seeds_or_report, write_section
from orchestrator.space import group_ratios, variables
from trials.adapruner import allocate as adapruner_allocate
from trials.baseline import ModelInfo, load_model, save_checkpoint, train_baseline
from trials.cost import count_cost
from trials.data import DataConfig, load_test
from trials.groups import build_graph
from trials.prune import rebuild
from trials.sensitivity import SensitivityMap, base_score, group_curve, keep_levels
from trials.sensitivity import allocate as sensitivity_allocate
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig, evaluate
from trials.trial import TrialConfig, run_trial

ARCH, SIZE = "resnet20", 16
FMNIST = "/usr/share/datasets/fashion-mnist"
DATA = DataConfig(
    name="fashion_mnist", root=FMNIST, image_size=SIZE, val_fraction=0.05, train_fraction=0.1, batch_size=64
)
BASE_DATA = DataConfig(
    name="fashion_mnist", root=FMNIST, image_size=SIZE, val_fraction=0.05, train_fraction=0.5, batch_size=128
)
BASELINE = {"epochs": 8, "lr": 0.1}
FINETUNE = {"epochs": 1, "lr": 0.01}
FINAL = {"epochs": 2, "lr": 0.01}
ADAPTIVE_BN = 10
CUTS = (0.75, 0.9)
KEEP_MIN, KEEP_MAX, KEEP_STEP = 0.1, 1.0, 0.05
BUDGET = 12  # brief fine-tunes' worth of trial-seconds per method and cut
TOP = 3  # fine-tunes after screening
SENS_LEVELS, SENS_VAL_BATCHES = 4, 16  # 16 batches of 512: the whole val split scores each cut
ONLY: set[str] = set()  # --methods: run only these (empty: all)
METHODS = ("uniform", "adapruner", "sensitivity", "random", "eagleeye", "tpe+sens", "screened")
STAGE_METHODS = ("stage-tpe", "stage-screen")
DEFAULT = "uniform"  # the reference every delta is taken to: what a search must beat
CPU = torch.device("cpu")
CACHE = ROOT / "runs" / "bench" / f"fmnist-{ARCH}-{SIZE}.pt"
NAME = "search_fmnist"  # the seed files' prefix and the docs section
optuna.logging.set_verbosity(optuna.logging.WARNING)


class Bench:
    def __init__(self):
        info = ModelInfo(ARCH, 10, 1, SIZE)
        if CACHE.is_file():
            model, _ = load_model(CACHE, info)
        else:
            torch.set_num_threads(2)
            model, _ = train_baseline(info, BASE_DATA, FinetuneConfig(**BASELINE, seed=0), "cpu", log=print)
            save_checkpoint(CACHE, model, info)
        torch.set_num_threads(1)
        self.info = info
        self.state = {k: v.clone() for k, v in model.state_dict().items()}
        self.graph = build_graph(model, (1, SIZE, SIZE), ARCH)
        self.macs = count_cost(model, (1, SIZE, SIZE)).macs
        self.test = load_test(DATA)
        self.baseline_val = base_score(ARCH, info, self.state, DATA)
        model.load_state_dict(self.state)
        self.baseline_test = evaluate(model, self.test, CPU)["accuracy"]
        self._smap: tuple[SensitivityMap, float] | None = None
        self.units: dict[tuple[str, float], float] = {}

    # -- the units of work, each timed -------------------------------------------------
    def _cfg(self, ratios, target: float, seed: int, evaluation: str, ft: dict) -> TrialConfig:
        return TrialConfig(
            arch=ARCH,
            baseline=self.state,
            data=DATA,
            keep=ratios,
            target=target,
            keep_min=KEEP_MIN,
            keep_max=KEEP_MAX,
            adaptive_bn_batches=ADAPTIVE_BN,
            evaluation=evaluation,
            finetune=FinetuneConfig(**ft, seed=seed),
            device="cpu",
        )

    def _charge(self, kind: str, target: float, wall: float) -> float:
        """What an operation costs against the budget: its calibrated unit cost (so a
        busy machine cannot change what a method gets), or its wall time before that."""
        return self.units.get((kind, round(target, 4)), wall) if target is not None else wall

    def calibrate(self, targets) -> dict:
        """Unit costs per target, timed once on a quiet machine: a brief fine-tune (median
        of 2) and an adaptive-BN screening (median of 3) of the uniform cut."""
        for target in targets:
            ft = statistics.median(self.finetune(1.0, target, 0)["wall"] for _ in range(2))
            sc = statistics.median(self.screen(1.0, target)["wall"] for _ in range(3))
            self.units[("finetune", round(target, 4))], self.units[("screen", round(target, 4))] = ft, sc
        return {f"{k}@{t}": v for (k, t), v in self.units.items()}

    def finetune(self, ratios, target: float, seed: int) -> dict:
        return self._timed("finetune", ratios, target, seed)

    def screen(self, ratios, target: float) -> dict:
        return self._timed("screen", ratios, target, 0)

    def _timed(self, kind: str, ratios, target: float, seed: int) -> dict:
        """One trial (a brief fine-tune, or an adaptive-BN screening), its wall time and its charge."""
        t0 = time.perf_counter()
        evaluation = "finetune" if kind == "finetune" else "adaptive_bn"
        r = run_trial(self._cfg(ratios, target, seed, evaluation, FINETUNE))
        wall = time.perf_counter() - t0
        return {
            "val": r["val_accuracy"],
            "spec": r["spec"],
            "macs_ratio": r["macs_ratio"],
            "wall": wall,
            "s": self._charge(kind, target, wall),
        }

    def final_test(self, spec: dict, seed: int) -> float:
        """The chosen counts, fine-tuned again (a data order no search saw), scored on test."""
        cfg = self._cfg(None, None, 10_000 + seed, "finetune", FINAL)
        cfg.keep, cfg.target, cfg.spec = None, None, ChannelSpec.from_dict(spec)
        r = run_trial(cfg)
        model = rebuild(ARCH, cfg.spec, 10, 1, SIZE)
        model.load_state_dict(r["state_dict"])
        return evaluate(model, self.test, CPU)["accuracy"]

    def smap(self) -> tuple[SensitivityMap, float]:
        """The sensitivity map and the seconds it took (computed once, charged to every use)."""
        if self._smap is None:
            t0 = time.perf_counter()
            levels = keep_levels(KEEP_MIN, SENS_LEVELS)
            top = base_score(ARCH, self.info, self.state, DATA, val_batches=SENS_VAL_BATCHES)
            raw = {}
            for g in self.graph.groups:
                curve = group_curve(
                    ARCH, self.info, self.state, g.name, g.channels, levels, DATA,
                    calib_batches=ADAPTIVE_BN, val_batches=SENS_VAL_BATCHES,
                )  # fmt: skip
                raw[g.name] = curve + [top]
            channels = {g.name: g.channels for g in self.graph.groups}
            self._smap = (SensitivityMap(levels + (1.0,), raw, top, channels), time.perf_counter() - t0)
        return self._smap

    def ratios_of(self, spec: ChannelSpec) -> dict[str, float]:
        return spec.ratios(self.graph.groups)


def _names(b: Bench) -> list[str]:
    return [g.name for g in b.graph.groups]


def _space(names):
    return {n: optuna.distributions.FloatDistribution(KEEP_MIN, KEEP_MAX, step=KEEP_STEP) for n in names}


def run_cell(b: Bench, cut: float, seed: int, budget: float, say=print) -> dict:
    target = 1 - cut
    names = _names(b)
    out: dict = {}

    def record(name: str, tried: list[dict], spent: float, extra: dict | None = None) -> None:
        best = max(tried, key=lambda r: r["val"])
        out[name] = {"val": best["val"], "spec": best["spec"], "macs_ratio": best["macs_ratio"], "seconds": spent,
                     "tried": len(tried), **(extra or {})}  # fmt: skip

    # one allocation each
    r = b.finetune(1.0, target, seed)
    record("uniform", [r], r["s"])
    spec, _ = adapruner_allocate(b.graph, target * b.macs, keep_min=KEEP_MIN, keep_max=KEEP_MAX, arch=ARCH)
    r = b.finetune(b.ratios_of(spec), target, seed)
    record("adapruner", [r], r["s"])
    smap, map_s = b.smap()
    spec, _, threshold = sensitivity_allocate(b.graph, smap, target * b.macs, keep_min=KEEP_MIN, arch=ARCH)
    sens = b.ratios_of(spec)
    r = b.finetune(sens, target, seed)
    record("sensitivity", [r], map_s + r["s"], {"threshold": threshold})

    est = r["s"]
    if not ONLY or ONLY & {"random", "eagleeye", "tpe+sens", "screened", "stage-tpe", "stage-screen"}:
        # random: fine-tune random draws until the budget is spent
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction="maximize")
        tried, spent, est = _finetuned(b, study, names, target, seed, budget, 0.0, r["s"])
        record("random", tried, spent)

        # eagleeye: random candidates screened by adaptive BN, the best TOP fine-tuned
        out["eagleeye"] = _screened(b, names, target, seed, budget, est, prior=None, map_s=0.0)

        # tpe+sens: the search as it runs today (sensitivity point first, TPE, all fine-tuned)
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="maximize")
        grid = [KEEP_MIN + i * KEEP_STEP for i in range(round((KEEP_MAX - KEEP_MIN) / KEEP_STEP) + 1)]
        study.enqueue_trial({n: min(grid, key=lambda v: abs(v - sens[n])) for n in names})
        tried, spent, _ = _finetuned(b, study, names, target, seed, budget, map_s, est)
        record("tpe+sens", tried, spent)

        out["screened"] = _screened(b, names, target, seed, budget, est, prior=sens, map_s=map_s)
        out.update(_stage_methods(b, target, seed, budget, est))
    say(f"seed {seed} cut {cut:.0%}: " + ", ".join(f"{k} {v['val']:.4f} ({v['tried']})" for k, v in out.items()))
    for row in out.values():  # the winners, fine-tuned again, read once on test
        row["test"] = b.final_test(row["spec"], seed)
    say(f"seed {seed} cut {cut:.0%} test: " + ", ".join(f"{k} {v['test']:.4f}" for k, v in out.items()))
    return out


def _finetuned(b: Bench, study, names, target, seed, budget, spent: float, est: float):
    """Ask, fine-tune, tell, while the budget leaves room for one more fine-tune."""
    tried: list[dict] = []
    while spent + est <= budget or not tried:
        t = study.ask(_space(names))
        row = b.finetune(dict(t.params), target, seed)
        study.tell(t, row["val"])
        tried.append(row)
        spent += row["s"]
        est = statistics.mean(x["s"] for x in tried)
    return tried, spent, est


def _stage_methods(b: Bench, target: float, seed: int, budget: float, est: float) -> dict:
    """The search over one keep ratio per stage (``granularity: stage``; 3 variables for
    ResNet-20), uniform first: every candidate fine-tuned (stage-tpe), or candidates
    screened by adaptive BN and the best TOP fine-tuned (stage-screen)."""
    out = {}
    var_map = variables(b.graph.groups, "stage")
    space = _space(list(var_map))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="maximize")
    study.enqueue_trial(dict.fromkeys(var_map, KEEP_MAX))
    tried, spent = [], 0.0
    while spent + est <= budget or not tried:
        t = study.ask(space)
        row = b.finetune(group_ratios(t.params, var_map), target, seed)
        study.tell(t, row["val"])
        tried.append(row)
        spent += row["s"]
    best = max(tried, key=lambda r: r["val"])
    out["stage-tpe"] = {"val": best["val"], "spec": best["spec"], "macs_ratio": best["macs_ratio"],
                        "seconds": spent, "tried": len(tried)}  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="maximize")
    study.enqueue_trial(dict.fromkeys(var_map, KEEP_MAX))
    screened, spent = [], 0.0
    while spent + TOP * est <= budget or len(screened) < TOP:
        t = study.ask(space)
        ratios = group_ratios(t.params, var_map)
        row = b.screen(ratios, target)
        study.tell(t, row["val"])
        screened.append({**row, "ratios": ratios})
        spent += row["s"]
    out["stage-screen"] = _fine_tune_top(b, screened, target, seed, spent)
    return out


def _screened(b: Bench, names, target, seed, budget, ft_s, prior, map_s) -> dict:
    """Candidates scored by adaptive BN while the budget leaves TOP fine-tunes, then the
    best TOP by that score fine-tuned. ``prior``: TPE over a multiplicative offset per
    group around these ratios (else random ratios)."""
    if prior is None:
        sampler, space = optuna.samplers.RandomSampler(seed=seed), _space(names)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=8, multivariate=True)
        space = {n: optuna.distributions.FloatDistribution(-1.0, 1.0) for n in names}  # log2 offsets
    study = optuna.create_study(sampler=sampler, direction="maximize")
    if prior is not None:
        study.enqueue_trial(dict.fromkeys(names, 0.0))
    spent, screened = map_s, []
    while spent + TOP * ft_s <= budget or len(screened) < TOP:
        t = study.ask(space)
        if prior is None:
            ratios = dict(t.params)
        else:
            ratios = {n: min(KEEP_MAX, max(KEEP_MIN, prior[n] * 2 ** t.params[n])) for n in names}
        row = b.screen(ratios, target)
        study.tell(t, row["val"])
        screened.append({**row, "ratios": ratios})
        spent += row["s"]
    return _fine_tune_top(b, screened, target, seed, spent)


def _fine_tune_top(b: Bench, screened: list[dict], target, seed, spent: float) -> dict:
    """The TOP distinct candidates by adaptive-BN score, fine-tuned; the best by val."""
    chosen, seen = [], set()
    for row in sorted(screened, key=lambda r: -r["val"]):
        key = json.dumps(row["spec"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            chosen.append(row)
        if len(chosen) == TOP:
            break
    tuned = []
    for row in chosen:
        r = b.finetune(row["ratios"], target, seed)
        tuned.append({**r, "screen": row["val"]})
        spent += r["s"]
    best = max(tuned, key=lambda r: r["val"])
    return {"val": best["val"], "spec": best["spec"], "macs_ratio": best["macs_ratio"], "seconds": spent,
            "tried": len(screened), "screen": best["screen"]}  # fmt: skip


def run(seeds: list[int], say=print) -> dict:
    t0 = time.perf_counter()
    b = Bench()
    say(f"baseline: val {b.baseline_val:.4f}, test {b.baseline_test:.4f}, MACs {b.macs / 1e6:.2f} M")
    _, map_s = b.smap()  # timed first, on a quiet machine, like the unit costs
    units = b.calibrate([1 - c for c in CUTS])
    budgets = {f"{c:.2f}": BUDGET * b.units[("finetune", round(1 - c, 4))] for c in CUTS}
    say(f"sensitivity map {map_s:.0f} s; unit costs {units}; budgets {budgets}")
    results = {"budgets_by_cut": budgets, "units": units, "baseline_val": b.baseline_val,
               "baseline_test": b.baseline_test, "map_seconds": map_s, "seeds": {}}  # fmt: skip
    for seed in seeds:
        results["seeds"][str(seed)] = {f"{c:.2f}": run_cell(b, c, seed, budgets[f"{c:.2f}"], say) for c in CUTS}
        _save_partial(results, seeds)
    results["seconds"] = time.perf_counter() - t0
    return results


def _save_partial(results: dict, seeds) -> None:
    save_seeds(NAME, results, seeds)


def merge(name: str | None = None) -> dict:
    """The seed files as one result (the calibration of the first file, the others' kept
    beside it)."""
    merged: dict = {"seeds": {}, "calibrations": []}
    for p in sorted((ROOT / "bench" / "results").glob(f"{name or NAME}.seeds-*.json")):
        data = json.loads(p.read_text())
        for k, v in data.items():
            if k != "seeds":
                merged.setdefault(k, v)
        merged["calibrations"].append({k: data[k] for k in ("units", "budgets_by_cut", "map_seconds")})
        merged["seeds"].update(data["seeds"])
    return merged


def _setting(arch: str, cuts: tuple[float, ...], levels: int = 4, val_batches: int = 16, only=()) -> None:
    """Point the module at another network and cuts (its own cache, seed files and section)."""
    global ARCH, CUTS, CACHE, NAME, SENS_LEVELS, SENS_VAL_BATCHES, ONLY
    ARCH, CUTS = arch, cuts
    SENS_LEVELS, SENS_VAL_BATCHES, ONLY = levels, val_batches, set(only)
    CACHE = ROOT / "runs" / "bench" / f"fmnist-{ARCH}-{SIZE}.pt"
    NAME = "search_fmnist" if arch == "resnet20" else f"search_fmnist_{arch}"
    if (levels, val_batches) != (4, 16):  # a cheaper sensitivity map: its own files and section
        NAME += f"_map{levels}x{val_batches}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed-range", type=int, nargs=2, metavar=("FIRST", "LAST"))
    parser.add_argument("--report", action="store_true", help="merge the seed files in bench/results and publish")
    parser.add_argument("--arch", default=ARCH, help=f"the network (default {ARCH}; resnet56 is the deeper setting)")
    parser.add_argument("--cuts", type=float, nargs="+", default=list(CUTS), help=f"MACs cuts (default {CUTS})")
    parser.add_argument("--sens-levels", type=int, default=SENS_LEVELS, help="keep ratios per group in the map")
    parser.add_argument("--sens-val-batches", type=int, default=SENS_VAL_BATCHES, help="val batches of 512 per score")
    parser.add_argument("--methods", nargs="+", help="run only these methods (uniform always runs: the reference)")
    parser.add_argument("--default-report", action="store_true", help="the default against the full run's methods")
    args = parser.parse_args()
    if args.default_report:
        _setting(args.arch, tuple(args.cuts))
        text = tables.default_table(sys.modules[__name__], args.sens_levels, args.sens_val_batches)
        write_section(ROOT / "docs" / "benchmarks.md", f"{NAME}_default", text)
        print(text)
        return
    _setting(args.arch, tuple(args.cuts), args.sens_levels, args.sens_val_batches, args.methods or ())
    seeds_or_report(args, NAME, run, _save_partial, merge, table)


def table(results: dict) -> str:
    """The section of this setting's results (bench/fmnist_tables.py)."""
    return tables.table(results, sys.modules[__name__])


if __name__ == "__main__":
    main()
