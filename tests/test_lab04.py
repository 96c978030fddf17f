"""Lab 04: Pareto frontier, greedy filter pruning, Sparse Structure Selection."""
import math

import pytest

import labkit as lk


# ---------------------------------------------------------------- pareto_front

def test_pareto_front_drops_dominated_points_and_sorts_by_cost():
    pts = [(3.0, 0.90), (1.0, 0.60), (2.0, 0.80), (2.5, 0.70), (4.0, 0.85)]
    # (2.5, .70) is beaten by (2.0, .80); (4.0, .85) by (3.0, .90)
    assert lk.metrics.pareto_front(pts) == [1, 2, 0]


def test_pareto_front_ties():
    # equal cost: only the more accurate survives
    assert lk.metrics.pareto_front([(1.0, 0.5), (1.0, 0.7)]) == [1]
    # equal accuracy: only the cheaper survives
    assert lk.metrics.pareto_front([(2.0, 0.7), (1.0, 0.7)]) == [1]
    # exact duplicates dominate neither each other: both kept, in index order
    assert lk.metrics.pareto_front([(1.0, 0.7), (0.5, 0.2), (1.0, 0.7)]) == [1, 0, 2]
    # a duplicate of a dominated point stays dominated
    assert lk.metrics.pareto_front([(2.0, 0.5), (1.0, 0.9), (2.0, 0.5)]) == [1]


def test_pareto_front_brute_force_definition():
    pts = [(c, a) for c in (1, 2, 3) for a in (0.1, 0.5, 0.9)] + [(1.5, 0.5), (2, 0.95)]
    front = lk.metrics.pareto_front(pts)

    def dominated(p):
        return any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in pts)

    assert sorted(front) == [i for i, p in enumerate(pts) if not dominated(p)]
    assert [pts[i][0] for i in front] == sorted(pts[i][0] for i in front)


def test_pareto_front_edge_cases():
    assert lk.metrics.pareto_front([]) == []
    assert lk.metrics.pareto_front([(5, 0.1)]) == [0]


@pytest.mark.parametrize("bad, exc, text", [
    ([(1.0, 0.5), (math.nan, 0.9)], ValueError, "nan"),
    ([(1.0, math.inf)], ValueError, "inf"),
    ([(1.0, 0.5, 3.0)], TypeError, "(1.0, 0.5, 3.0)"),
    ([("a", 0.5)], TypeError, "'a'"),
    ([7], TypeError, "7"),
])
def test_pareto_front_rejects_bad_points(bad, exc, text):
    with pytest.raises(exc, match=text.replace("(", r"\(").replace(")", r"\)")):
        lk.metrics.pareto_front(bad)
