"""Sweeps and sensitivity scans: prune a copy, evaluate, never touch the original.

- :func:`sweep`: one pruning method over a list of sparsities, whole model.
- :func:`scan`: one layer at a time over a list of sparsities (sensitivity),
  restoring the model exactly after each point.
- :func:`breakpoint`: the largest sparsity whose accuracy drop stays within a bound.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from .config import progress as _progress
from .prune.masks import prunable


def sweep(model: nn.Module, prune: Callable[[nn.Module, float], object], sparsities: list,
          evaluate: Callable[[nn.Module], float], progress: bool = True, desc: str = "sweep") -> list[dict]:
    """For each s in `sparsities`: deep-copy `model`, call prune(copy, s), and
    evaluate(copy). Returns [{'sparsity': s, 'accuracy': acc, 'model': copy}]."""
    out = []
    for s in tqdm(sparsities, desc=desc, disable=not (progress and _progress()), mininterval=2):
        m = copy.deepcopy(model)
        prune(m, s)
        out.append(dict(sparsity=s, accuracy=evaluate(m), model=m))
    return out


@torch.no_grad()
def scan(model: nn.Module, prune_layer: Callable[[nn.Module, str, float], object], sparsities: list,
         evaluate: Callable[[nn.Module], float], layers: list | None = None,
         progress: bool = True) -> dict[str, list[float]]:
    """Sensitivity: {layer: [accuracy after pruning only that layer to s, for s
    in sparsities]}. The layer's weights (and mask) are restored after every point."""
    names = list(prunable(model)) if layers is None else list(layers)
    curves = {}
    for name in tqdm(names, desc="sensitivity scan", disable=not (progress and _progress()), mininterval=2):
        module = dict(model.named_modules())[name]
        saved_w = module.weight.detach().clone()
        saved_mask = module.weight_mask.clone() if hasattr(module, "weight_mask") else None
        curves[name] = []
        for s in sparsities:
            prune_layer(model, name, s)
            curves[name].append(evaluate(model))
            module.weight.copy_(saved_w)
            if saved_mask is None:
                del module._buffers["weight_mask"]
            else:
                module.weight_mask = saved_mask.clone()
    return curves


def breakpoint(sparsities: list, accuracies: list, baseline: float, max_drop: float = 0.01) -> float:
    """The largest sparsity, scanning upwards, before accuracy first falls more
    than `max_drop` (a fraction, 0.01 = 1 point) below `baseline`."""
    best = float("nan")
    for s, a in zip(sparsities, accuracies):
        if baseline - a > max_drop:
            break
        best = s
    return best
