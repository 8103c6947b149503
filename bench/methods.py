"""The seed methods on the digits setting: val accuracy at 50% and 75% MACs cut, 3 seeds.

Every method prunes a ResNet-20 trained on the digits data (with its own regularizer
where it has one) to the same MACs, then gets the same brief fine-tune; only the
validation split is read. Results go to bench/results/methods.json and the table in
docs/methods.md. Run: `python -m bench.methods` (about 10 min on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench.report import machine, publish
from trials.adapruner import allocate
from trials.baseline import ModelInfo, train_baseline
from trials.budget import project_ratios
from trials.cost import count_cost
from trials.data import DataConfig, load_train_val
from trials.groups import build_graph
from trials.regularizers import make_regularizer, threshold_spec
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig, evaluate
from trials.trial import TrialConfig, run_trial

ROOT = Path(__file__).resolve().parent.parent
ARCH = "resnet20"
DATA = DataConfig(name="digits", val_fraction=0.2, batch_size=128)
BASELINE_EPOCHS = 10
FINETUNE = {"epochs": 2, "lr": 0.01}
TRIAL_BATCH = 32
CUTS = (0.5, 0.75)  # fraction of MACs removed
REGULARIZERS = {
    "none": {},
    "dafp": {"target": 0.5, "threshold": 0.05},
    "ffr": {"weight": 0.5},
    "paam": {"weight": 1e-3},
}
# method -> (baseline regularizer, how counts are allocated, criterion)
METHODS = {
    "uniform + l1 (reference)": ("none", "uniform", "l1"),
    "uniform + auto (AdaPruner inheritance)": ("none", "uniform", "auto"),
    "AdaPruner (BN-importance counts + auto)": ("none", "adapruner", "auto"),
    "DAFP (sparsity training + dafp criterion)": ("dafp", "uniform", "dafp"),
    "FFR (feature-flow training + l1)": ("ffr", "uniform", "l1"),
    "PAAM (learned scores: counts + criterion)": ("paam", "paam", "paam"),
}


def _spec(alloc: str, model, scores: dict, target_ratio: float) -> ChannelSpec:
    info = (1, 32, 32)
    graph = build_graph(model, info, ARCH)
    base = count_cost(model, info).macs
    kw = {"keep_min": 0.05, "arch": ARCH, "num_classes": 10}
    if alloc == "adapruner":
        return allocate(graph, target_ratio * base, **kw)[0]
    if alloc == "paam":
        ratios = threshold_spec(scores, graph.groups).ratios(graph.groups)
        return project_ratios(graph, ratios, target_ratio * base, **kw)[0]
    return project_ratios(graph, {g.name: 1.0 for g in graph.groups}, target_ratio * base, **kw)[0]


def run(seeds: list[int], say=print) -> dict:
    splits = load_train_val(DATA)
    info = ModelInfo(ARCH, splits.num_classes, splits.in_channels, splits.image_size)
    results: dict = {"baselines": {}, "methods": {}}
    for seed in seeds:
        baselines = {}
        for reg_name, opts in REGULARIZERS.items():
            if not any(m[0] == reg_name for m in METHODS.values()):
                continue
            t0 = time.perf_counter()
            reg = make_regularizer(reg_name, **opts)
            ft = FinetuneConfig(epochs=BASELINE_EPOCHS, lr=0.1, seed=seed)
            model, metrics = train_baseline(info, DATA, ft, "cpu", log=None, reg=reg)
            acc = evaluate(model, splits.val, torch.device("cpu"))["accuracy"]
            baselines[reg_name] = (model, metrics.get("scores", {}))
            results["baselines"].setdefault(reg_name, []).append(acc)
            say(f"seed {seed} baseline {reg_name}: val {acc:.4f} ({time.perf_counter() - t0:.0f} s)")
        for method, (reg_name, alloc, criterion) in METHODS.items():
            model, scores = baselines[reg_name]
            for cut in CUTS:
                spec = _spec(alloc, model, scores, 1 - cut)
                tc = TrialConfig(
                    arch=ARCH,
                    baseline={k: v.clone() for k, v in model.state_dict().items()},
                    data=DataConfig(name="digits", val_fraction=0.2, batch_size=TRIAL_BATCH),
                    spec=spec,
                    criterion=criterion,
                    learned_scores={k: v.tolist() for k, v in scores.items()} or None,
                    adaptive_bn_batches=10,
                    finetune=FinetuneConfig(**FINETUNE, seed=seed),
                    device="cpu",
                )
                r = run_trial(tc)
                key = f"{cut:.2f}"
                results["methods"].setdefault(method, {}).setdefault(key, []).append(r["val_accuracy"])
                say(f"seed {seed} {method} cut {cut:.0%}: val {r['val_accuracy']:.4f} at {r['macs_ratio']:.3f}x MACs")
    return results


def _cell(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def table(results: dict) -> str:
    n = len(next(iter(results["baselines"].values())))
    lines = [
        f"Setting: ResNet-20 on the digits data (val split 20%, {DATA.val_fraction * 1797:.0f} images), baselines "
        f"trained {BASELINE_EPOCHS} epochs; every pruned network fine-tuned {FINETUNE['epochs']} epochs at lr "
        f"{FINETUNE['lr']} (batch {TRIAL_BATCH}, adaptive BN first). Val accuracy in %, mean ± sd over {n} seeds.",
        f"Machine: {results['machine']}; {results['date']}; {results['seconds'] / 60:.0f} min.",
        "",
        "| method | baseline val acc | 50% MACs cut | 75% MACs cut |",
        "|---|---|---|---|",
    ]
    for method, (reg_name, _, _) in METHODS.items():
        cells = [_cell(results["methods"][method][f"{c:.2f}"]) for c in CUTS]
        lines.append(f"| {method} | {_cell(results['baselines'][reg_name])} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    results = run(list(range(args.seeds)))
    results["seconds"] = time.perf_counter() - t0
    results["machine"] = machine()
    results["date"] = time.strftime("%Y-%m-%d")
    publish("methods", results, table(results), doc="methods.md", key="methods-table")


if __name__ == "__main__":
    main()
