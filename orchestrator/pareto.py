"""Pareto fronts over (val_accuracy: max, macs: min), with ranks, in O(n log n).

Points sorted by (macs ascending, accuracy descending) are swept once; a point takes the
lowest rank none of whose members dominates it. Inside one rank the last point added
has the rank's highest accuracy, and those accuracies fall as the rank grows, so the
rank is found by binary search. Duplicates (equal accuracy and MACs) share a rank.
"""

from __future__ import annotations

from collections.abc import Sequence


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """a = (acc, macs) dominates b: no worse in both, better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_ranks(points: Sequence[tuple[float, float]]) -> list[int]:
    """Rank of each (accuracy, macs) point: 0 for the front, 1 for the next, ..."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    last: list[tuple[float, float]] = []  # the last point added to each rank
    ranks = [0] * len(points)
    for i in order:
        p = points[i]
        lo, hi = 0, len(last)
        while lo < hi:  # first rank whose last point does not dominate p
            mid = (lo + hi) // 2
            if _dominates(last[mid], p):
                lo = mid + 1
            else:
                hi = mid
        if lo == len(last):
            last.append(p)
        else:
            last[lo] = p
        ranks[i] = lo
    return ranks


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points, by ascending MACs."""
    ranks = pareto_ranks(points)
    return sorted((i for i, r in enumerate(ranks) if r == 0), key=lambda i: (points[i][1], -points[i][0]))
