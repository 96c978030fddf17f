"""Methods that prune and train: schedules (one-shot, iterative, AGP, rewinding), greedy
layer-wise filter pruning, Sparse Structure Selection. They sit above labkit.train; the
primitives they use (labkit.prune) sit below it.

Every method is reachable through one interface (labkit.methods.registry)::

    model, info = lk.methods.prune_to(name, dense, target, ctx)

name: a key of METHODS (``applicable(dense)`` lists those for a model, unknown -> ValueError);
dense: the dense model, never changed; target: a compression factor c >= 1: the result keeps
  <= 1/c of the dense Conv/Linear weights (a mask at global sparsity 1 - 1/c, or a physically
  smaller model with <= dense / c weights; a knob is searched for it);
ctx: a Context(data, budget, seed, knobs, targets): what a method may need; work shared by
  the targets of one dense model (sensitivity scan, greedy path, SSS training) is done once.
info: ``compression`` (the factor the result stands for: the target, 2.0 for 2:4),
  ``structured`` (physically smaller), ``reference`` (its dense original, when structured),
  ``tune_images`` (fine-tune on only that many) and more fields for the results row.
The result is not yet fine-tuned: ``ctx.fine_tune(model, info.get("tune_images"))`` gives
every method the same Budget. Raises Unreachable (a ValueError) when a method cannot produce
the target (hybrid at or below its greedy start, the planner beyond its scanned range).
"""
from . import greedy, registry, schedules, sss
from .registry import METHODS, Budget, Context, Unreachable, applicable, describe, prune_to

__all__ = ["greedy", "registry", "schedules", "sss", "METHODS", "Budget", "Context",
           "Unreachable", "applicable", "describe", "prune_to"]
