"""Prototype (not used by the product yet): a latency table that knows channel blocks.

CPU kernels work in blocks of channels (oneDNN: 8 or 16 floats), so a layer's latency
over its kept count is a staircase, which today's table (``count`` levels per side,
bilinear between them) smooths over. The variant times every multiple of ``B`` (and the
full width) and looks a kept count up by rounding it up to the grid. Both are built and
checked (``trials.latency_table.check_table``: 20 random pruned networks, each timed
beside the whole one) ``--builds`` times each, alternating, on the same network.

Run: ``python -m bench.latency_blocks resnet56 --in-channels 3 --size 32 --batch 16``.
"""

from __future__ import annotations

import time

import trials.latency_table as lt
from bench.report import latency_case, network_parser


def block_levels(block: int):
    def levels(n: int, count: int) -> list[int]:
        return sorted({min(n, block * k) for k in range(1, -(-n // block) + 1)})

    return levels


def ceil_interp(xs: list[int], x: float) -> tuple[int, int, float]:
    hi = next((i for i, v in enumerate(xs) if v >= x - 1e-9), len(xs) - 1)
    return hi, hi, 0.0


def main() -> None:
    ap = network_parser(__doc__, builds=2)
    ap.add_argument("--block", type=int, default=8)
    args = ap.parse_args()
    settings, build, graph = latency_case(args, repeats=21)
    variants = {"today": (lt.levels, lt._interp), "blocks": (block_levels(args.block), ceil_interp)}
    for i in range(args.builds):
        for name, (levels, interp) in variants.items():
            lt.levels, lt._interp = levels, interp
            t0 = time.perf_counter()
            table = lt.build_table(graph, settings, count=6, build=build, calibrate=8, keep_min=0.25)
            built = time.perf_counter() - t0
            check = lt.check_table(table, graph, build, n=20, keep_min=0.25)
            print(
                f"{args.arch} {args.size}x{args.size} batch {args.batch} build {i + 1} {name}: ratio error median "
                f"{100 * check['median_rel_error']:.1f}%, worst {100 * check['worst_rel_error']:.1f}% "
                f"(table {built:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
