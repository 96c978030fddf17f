"""Methods that prune and train: schedules (one-shot, iterative, AGP, rewinding),
greedy layer-wise filter pruning, Sparse Structure Selection. They sit above labkit.train;
the primitives they use (labkit.prune) sit below it."""
from . import greedy, schedules, sss

__all__ = ["greedy", "schedules", "sss"]
