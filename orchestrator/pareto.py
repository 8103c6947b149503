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


class Front:
    """The non-dominated set of (accuracy: max, cost: min) points, kept as points arrive.

    Adding a point costs O(front size), not O(points seen): what a search's driver runs
    after every trial, so that its bookkeeping stays flat as the search grows. Equal
    points share the front, as in ``pareto_ranks``; adding a key again replaces its point.
    """

    def __init__(self) -> None:
        self.members: dict[str, tuple[float, float]] = {}

    def add(self, key: str, accuracy: float, cost: float) -> tuple[bool, list[str]]:
        """Returns (whether the point is on the front, the keys it pushed off). Adding a
        key again with its point (a retried write) changes nothing."""
        p = (accuracy, cost)
        if self.members.get(key) == p:
            return True, []
        if any(_dominates(q, p) for q in self.members.values()):
            return False, []
        gone = [k for k, q in self.members.items() if _dominates(p, q)]
        for k in gone:
            del self.members[k]
        self.members[key] = p
        return True, gone


def hypervolume(points: Sequence[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by the (accuracy: max, cost: min) ``points`` and bounded by ``ref``
    = (worst accuracy, worst cost); points beyond the reference add nothing."""
    acc_ref, cost_ref = ref
    inside = [p for p in points if p[0] > acc_ref and p[1] < cost_ref]
    front = [inside[i] for i in pareto_front(inside)]  # cost ascending, accuracy ascending
    area = 0.0
    for i, (acc, cost) in enumerate(front):
        right = front[i + 1][1] if i + 1 < len(front) else cost_ref
        area += (acc - acc_ref) * (right - cost)
    return area
