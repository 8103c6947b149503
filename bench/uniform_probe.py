"""Is uniform pruning a local optimum? Allocations one step away from it, at a 90% MACs cut.

On the search_fmnist setting (ResNet-20, Fashion-MNIST at 16x16, its cached baseline),
each variant sets every group's keep ratio from two knobs and is then scaled onto 10% of
the baseline's MACs: the residual-stream groups (conv1, layer2.0.conv2, layer3.0.conv2,
shared by a whole stage through the skip connections) kept ``a`` times as wide as the
blocks' inner convolutions, and one stage widened against the others. Each variant gets
the search's brief fine-tune (3 seeds), its val accuracy, and its test accuracy after the
final 2-epoch fine-tune. ``python -m bench.uniform_probe`` (about 6 minutes, one core).
"""

from __future__ import annotations

import statistics

from bench.search_fmnist import Bench

RESIDUAL = {"conv1", "layer2.0.conv2", "layer3.0.conv2"}
SEEDS = (0, 1, 2)


def main() -> None:
    b = Bench()
    names = [g.name for g in b.graph.groups]
    stage = {g.name: g.stage for g in b.graph.groups}

    def ratios(a: float, st=(1.0, 1.0, 1.0)) -> dict[str, float]:
        return {n: min(1.0, (a if n in RESIDUAL else 1.0) * st[stage[n]] * 0.3) for n in names}

    variants = {f"residual x{a}": ratios(a) for a in (0.5, 0.7, 1.0, 1.4, 2.0, 3.0)}
    variants["stage 3 wider"] = ratios(1.0, (0.7, 1.0, 1.4))
    variants["stage 1 wider"] = ratios(1.0, (1.4, 1.0, 0.7))
    print("| variant (x1.0 is uniform) | val | test | test sd | MACs ratio |\n|---|---:|---:|---:|---:|")
    for name, r in variants.items():
        vals, tests = [], []
        for seed in SEEDS:
            x = b.finetune(r, 0.1, seed)
            vals.append(x["val"])
            tests.append(b.final_test(x["spec"], seed))
        print(
            f"| {name} | {100 * statistics.mean(vals):.2f} | {100 * statistics.mean(tests):.2f} | "
            f"{100 * statistics.stdev(tests):.2f} | {x['macs_ratio']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
