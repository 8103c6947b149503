from __future__ import annotations

import random

from orchestrator.pareto import Front, hypervolume, pareto_front, pareto_ranks


def _brute_ranks(points):
    ranks, remaining, r = [None] * len(points), set(range(len(points))), 0
    while remaining:
        front = {
            i
            for i in remaining
            if not any(
                points[j][0] >= points[i][0] and points[j][1] <= points[i][1] and points[j] != points[i]
                for j in remaining
            )
        }
        for i in front:
            ranks[i] = r
        remaining -= front
        r += 1
    return ranks


def test_hand_built_front_with_ties_and_duplicates():
    pts = [
        (0.90, 10),  # 0 front
        (0.95, 20),  # 1 front
        (0.95, 20),  # 2 duplicate of 1: front too
        (0.95, 25),  # 3 same accuracy, more MACs: dominated by 1
        (0.90, 12),  # 4 same accuracy as 0, more MACs: dominated
        (0.85, 10),  # 5 same MACs as 0, lower accuracy: dominated
        (0.99, 40),  # 6 front
        (0.80, 50),  # 7 dominated by everything before: rank 2
    ]
    assert pareto_ranks(pts) == [0, 0, 0, 1, 1, 1, 0, 2]
    assert pareto_front(pts) == [0, 1, 2, 6]


def test_matches_brute_force_on_random_sets_with_many_ties():
    rng = random.Random(0)
    for _ in range(200):
        pts = [(rng.choice([0.8, 0.85, 0.9, 0.95]), rng.choice([1, 2, 3, 4, 5])) for _ in range(rng.randint(0, 30))]
        assert pareto_ranks(pts) == _brute_ranks(pts)


def test_empty_and_single():
    assert pareto_ranks([]) == [] and pareto_front([(0.5, 1)]) == [0]


def test_hypervolume_by_hand_and_against_a_grid_count():
    # two steps: (0.9 acc at cost 0.5) and (0.6 at 0.2), reference (0.1, 1.0)
    assert abs(hypervolume([(0.9, 0.5), (0.6, 0.2), (0.5, 0.6)], (0.1, 1.0)) - (0.5 * 0.3 + 0.8 * 0.5)) < 1e-12
    assert hypervolume([(0.05, 0.5), (0.9, 1.2)], (0.1, 1.0)) == 0.0  # beyond the reference
    rng = random.Random(3)
    pts = [(round(rng.random(), 2), round(rng.random(), 2)) for _ in range(40)]
    n = 200  # count grid cells (cell centres) dominated by some point
    cells = sum(any(a >= (i + 0.5) / n and c <= (j + 0.5) / n for a, c in pts) for i in range(n) for j in range(n))
    assert abs(hypervolume(pts, (0.0, 1.0)) - cells / n**2) < 0.01


def test_front_kept_as_points_arrive_matches_the_batch_front():
    rng = random.Random(7)
    pts = [(round(rng.random(), 1), round(rng.random(), 1)) for _ in range(300)]  # many ties
    front, tagged = Front(), {}
    for i, (acc, cost) in enumerate(pts):
        on, gone = front.add(str(i), acc, cost)
        tagged[str(i)] = on
        for k in gone:
            assert tagged[k] and _dominates_pt(pts[i], pts[int(k)])
            tagged[k] = False
        assert front.add(str(i), acc, cost) == (on, [])  # a retried write changes nothing
    expected = {str(i) for i in pareto_front(pts)}
    assert set(front.members) == expected == {k for k, on in tagged.items() if on}
    assert len(front) == len(expected)
    for limit in (0.0, 0.25, 0.55, 1.0):  # the most accurate point within a cost, as a full scan finds it
        within = [acc for acc, cost in pts if cost <= limit]
        best = front.best_within(limit)
        assert (best is None) == (not within)
        assert best is None or pts[int(best)][0] == max(within)


def test_adding_a_key_again_with_a_new_point_replaces_its_old_point():
    front = Front()
    front.add("a", 0.9, 10.0)
    front.add("b", 0.5, 5.0)
    assert front.add("a", 0.4, 20.0) == (False, []) and set(front.members) == {"b"}
    assert front.add("b", 0.95, 4.0) == (True, []) and front.members == {"b": (0.95, 4.0)}
    assert front.best_within(4.5) == "b" and front.best_within(3.0) is None


def _dominates_pt(a, b):
    return a[0] >= b[0] and a[1] <= b[1] and a != b
