"""Lab 04's frontier check, moved out of the notebook: lk.metrics.pareto_front returns exactly the
points that no other point dominates (at least as good on both axes, better on one), the way the
lab reads it on sparsity (higher is better: cost = -sparsity), size and latency."""
import random

import labkit as lk


def _dominated(p, pts):
    return any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in pts)


def test_pareto_front_is_the_non_dominated_set():
    rng = random.Random(0)
    for trial in range(200):
        # coarse values, so ties in cost, in accuracy and exact duplicates all occur
        pts = [(rng.randint(0, 6) / 2, rng.randint(0, 6) / 6) for _ in range(rng.randint(1, 9))]
        front = lk.metrics.pareto_front(pts)
        assert sorted(front) == [i for i, p in enumerate(pts) if not _dominated(p, pts)], pts


def test_pareto_front_on_a_higher_is_better_axis():
    sparsity, accuracy = [0.0, 0.5, 0.8, 0.5], [0.9, 0.85, 0.6, 0.8]
    front = lk.metrics.pareto_front([(-s, a) for s, a in zip(sparsity, accuracy)])
    assert front == [2, 1, 0]      # by cost: sparsest first; (0.5, 0.8) is dominated
