"""EagleEye's adaptive-BN evaluation as a search fidelity: how well does it rank candidates?

Random per-layer keep ratios of a ResNet-20 trained on the digits data, each projected
onto one MACs budget (the hard case: every candidate costs the same, only the allocation
differs), plus a set at mixed budgets. Each candidate is scored three ways, all on the
validation split: plain evaluation right after pruning, adaptive-BN evaluation
(`trial.evaluation: adaptive_bn`), and the search's brief fine-tune. Reported: Spearman
and Kendall rank correlations of the cheap scores with the fine-tuned accuracy, and the
cost of each. Results: bench/results/eagleeye.json and docs/benchmarks.md.
Run: `python -m bench.eagleeye` (about 6 min on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from scipy import stats

from bench.report import machine, publish
from trials.baseline import ModelInfo, train_baseline
from trials.data import DataConfig, load_train_val
from trials.groups import build_graph
from trials.train import FinetuneConfig
from trials.trial import TrialConfig, run_trial

ROOT = Path(__file__).resolve().parent.parent
ARCH = "resnet20"
DATA = DataConfig(name="digits", val_fraction=0.2, batch_size=32)


def candidates(groups, n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{g.name: rng.uniform(0.2, 1.0) for g in groups} for _ in range(n)]


def score(state, keep, macs_target, evaluation: str, abn: int, seed: int) -> tuple[float, float, float]:
    tc = TrialConfig(
        arch=ARCH,
        baseline=state,
        data=DATA,
        keep=keep,
        target=macs_target,
        keep_min=0.1,
        criterion="l1",
        evaluation=evaluation,
        adaptive_bn_batches=abn,
        finetune=FinetuneConfig(epochs=2, lr=0.01, seed=seed),
        device="cpu",
    )
    t0 = time.perf_counter()
    r = run_trial(tc)
    return r["val_accuracy"], r["macs_ratio"], time.perf_counter() - t0


def run(n: int, say=print) -> dict:
    splits = load_train_val(DATA)
    info = ModelInfo(ARCH, splits.num_classes, splits.in_channels, splits.image_size)
    model, _ = train_baseline(
        info, DataConfig(name="digits", val_fraction=0.2), FinetuneConfig(epochs=10, lr=0.1), "cpu", log=None
    )
    state = {k: v.clone() for k, v in model.state_dict().items()}
    groups = build_graph(model, (1, 32, 32), ARCH).groups
    out: dict = {}
    for setting, target in (("fixed 50% MACs", 0.5), ("mixed MACs", None)):
        rows = []
        for i, keep in enumerate(candidates(groups, n, seed=1 if target else 2)):
            # plain evaluation: adaptive_bn with recalibration off is the pruned network as cut
            plain = score(state, keep, target, "adaptive_bn", 0, i)
            abn = score(state, keep, target, "adaptive_bn", 10, i)
            ft = score(state, keep, target, "finetune", 10, i)
            rows.append(
                {
                    "plain": plain[0],
                    "adaptive_bn": abn[0],
                    "finetune": ft[0],
                    "macs_ratio": ft[1],
                    "seconds": [plain[2], abn[2], ft[2]],
                }
            )
            say(
                f"{setting} {i}: plain {plain[0]:.3f}  adaptive-BN {abn[0]:.3f}  fine-tuned {ft[0]:.3f}  at {ft[1]:.3f}x MACs"
            )
        truth = [r["finetune"] for r in rows]
        summary = {}
        for cheap in ("plain", "adaptive_bn"):
            xs = [r[cheap] for r in rows]
            summary[cheap] = {
                "spearman": stats.spearmanr(xs, truth).statistic,
                "kendall": stats.kendalltau(xs, truth).statistic,
            }
        secs = [sum(r["seconds"][k] for r in rows) / len(rows) for k in range(3)]
        out[setting] = {
            "rows": rows,
            "summary": summary,
            "mean_seconds": dict(zip(("plain", "adaptive_bn", "finetune"), secs)),
        }
    return out


def section(res: dict, n: int) -> str:
    lines = [
        "## EagleEye: adaptive-BN evaluation as a search fidelity",
        "",
        f"`python -m bench.eagleeye` on {res['machine']}, {res['date']}. ResNet-20 trained 10 epochs on the digits "
        f"data; {n} random per-group keep-ratio candidates per setting (l1 criterion), scored on the validation "
        "split (359 images) three ways: as cut (plain), after BN recalibration on 10 training batches (adaptive BN, "
        "no training), and after the search's brief fine-tune (2 epochs, lr 0.01, batch 32). Rank correlation of "
        "each cheap score with the fine-tuned accuracy:",
        "",
        "| setting | score | Spearman | Kendall | s per candidate |",
        "|---|---|---|---|---|",
    ]
    for setting in ("fixed 50% MACs", "mixed MACs"):
        r = res[setting]
        for cheap in ("plain", "adaptive_bn"):
            s = r["summary"][cheap]
            lines.append(
                f"| {setting} | {cheap} | {s['spearman']:.2f} | {s['kendall']:.2f} | {r['mean_seconds'][cheap]:.1f} |"
            )
        lines.append(f"| {setting} | fine-tune (reference) | 1 | 1 | {r['mean_seconds']['finetune']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    res = run(args.candidates)
    res["machine"], res["date"] = machine(), time.strftime("%Y-%m-%d")
    text = section(res, args.candidates)
    publish("eagleeye", res, text)


if __name__ == "__main__":
    main()
