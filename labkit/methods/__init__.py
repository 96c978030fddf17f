"""Methods that prune and train: schedules (one-shot, iterative, AGP, rewinding), greedy
filter pruning, Sparse Structure Selection, all reachable through one interface (registry)::

    model, info = lk.methods.prune_to(name, dense, target, ctx)

name: a key of METHODS (``applicable(dense)``: those for a model); dense: never changed;
target: compression factor c >= 1: the result keeps <= 1/c of the dense Conv/Linear weights
(a mask at global sparsity 1 - 1/c, or a physically smaller model, its knob searched);
ctx: Context(data, budget, seed, knobs, targets); work shared by the targets of one dense
model (sensitivity scan, greedy path, SSS training) is done once. info: ``compression`` (2.0
for 2:4), ``structured``, ``reference`` (the dense original, when structured), ``tune_images``
and more row fields. Not yet fine-tuned: ``ctx.fine_tune(model, info.get("tune_images"))``
gives every method the same Budget. Unreachable (a ValueError): the target is out of reach.
"""
from . import greedy, registry, schedules, sss
from .registry import METHODS, Budget, Context, Unreachable, applicable, describe, prune_to

__all__ = ["greedy", "registry", "schedules", "sss", "METHODS", "Budget", "Context",
           "Unreachable", "applicable", "describe", "prune_to"]
