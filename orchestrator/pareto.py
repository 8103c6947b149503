"""Pareto fronts over (val_accuracy: max, macs: min), with ranks, in O(n log n).

Points sorted by (macs ascending, accuracy descending) are swept once; a point takes the
lowest rank none of whose members dominates it. Inside one rank the last point added
has the rank's highest accuracy, and those accuracies fall as the rank grows, so the
rank is found by binary search. Duplicates (equal accuracy and MACs) share a rank.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
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

    What a search's driver runs after every trial, so it must not grow with the number of
    trials seen: the front is kept sorted by cost (along a front, accuracy then rises
    too), and a point is placed by binary search, O(log front) plus the points it pushes
    off. Equal points share the front, as in ``pareto_ranks``; adding a key again with a
    new point replaces its old one.
    """

    def __init__(self) -> None:
        self.members: dict[str, tuple[float, float]] = {}  # key -> (accuracy, cost)
        self._cost: list[float] = []  # the members' costs, ascending
        self._acc: list[float] = []  # their accuracies (ascending too)
        self._key: list[str] = []

    def __len__(self) -> int:
        return len(self._key)

    def add(self, key: str, accuracy: float, cost: float) -> tuple[bool, list[str]]:
        """Returns (whether the point is on the front, the keys it pushed off). Adding a
        key again with its point (a retried write) changes nothing."""
        p = (accuracy, cost)
        old = self.members.get(key)
        if old == p:
            return True, []
        if old is not None:
            self._remove(key, old[1])
        i = bisect_right(self._cost, cost)  # members [0, i) cost no more than p
        if i and self._acc[i - 1] >= accuracy and (self._acc[i - 1], self._cost[i - 1]) != p:
            return False, []  # the most accurate of them dominates p
        j = bisect_left(self._cost, cost)
        k = j  # members [j, k) cost no less and are no more accurate: p dominates them, or equals them
        while k < len(self._acc) and self._acc[k] <= accuracy:
            k += 1
        gone = [self._key[m] for m in range(j, k) if (self._acc[m], self._cost[m]) != p]
        same = [self._key[m] for m in range(j, k) if (self._acc[m], self._cost[m]) == p] + [key]
        self._cost[j:k], self._acc[j:k], self._key[j:k] = [cost] * len(same), [accuracy] * len(same), same
        for g in gone:
            del self.members[g]
        self.members[key] = p
        return True, gone

    def _remove(self, key: str, cost: float) -> None:
        del self.members[key]
        m = self._key.index(key, bisect_left(self._cost, cost))
        del self._cost[m], self._acc[m], self._key[m]

    def best_within(self, cost: float) -> str | None:
        """The key of the most accurate member costing at most ``cost`` (None: none does)."""
        i = bisect_right(self._cost, cost)
        return self._key[i - 1] if i else None


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
