"""Magnitude (L1) pruning, per tensor and global.

``sparsity`` is absolute: the fraction of the layer's (or, for global pruning,
all counted layers') weights that are zero AFTER the call. The number of
zeros is ``round(sparsity * n)`` (Python's round, as torch.nn.utils.prune).
Weights pruned before stay pruned: they rank below every live weight.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import check_fraction
from .masks import current_mask, layer, prunable, set_mask


def n_zeros(sparsity: float, n: int) -> int:
    """How many of `n` weights are zero at `sparsity`: round(sparsity * n)."""
    return int(round(sparsity * n))


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask (flat bool, scores' length) dropping the k lowest scores (ties: lowest index)."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        keep[torch.argsort(scores, stable=True)[:k]] = False
    return keep


def _scores(module: nn.Module) -> torch.Tensor:
    """|w| flattened, with already-pruned weights set to -1 so they go first. (n,)"""
    s = module.weight.detach().abs().flatten().float()
    return torch.where(current_mask(module).flatten(), s, torch.full_like(s, -1.0))


def _check_not_lower(name: str, module: nn.Module, k: int) -> None:
    """ValueError when `k` zeros would un-prune some of the layer's pruned weights."""
    already = int((~current_mask(module)).sum())
    if k < already:
        raise ValueError(f"layer {name!r} already has {already} pruned weights; sparsity "
                         f"asking for {k} zeros would un-prune weights (masks only grow)")


@torch.no_grad()
def prune_layer(model: nn.Module, name: str, sparsity: float) -> torch.Tensor:
    """Prune layer `name` to `sparsity` by |weight|; returns its bool keep-mask (weight's shape)."""
    sparsity = check_fraction(f"sparsity for layer {name!r}", sparsity)
    m = layer(model, name)
    k = n_zeros(sparsity, m.weight.numel())
    _check_not_lower(name, m, k)
    mask = _lowest(_scores(m), k).view_as(m.weight)
    set_mask(m, mask)
    return mask


def _plan(model: nn.Module, sparsity, layers) -> dict[str, float]:
    """{layer: sparsity} from a float (applied to `layers` or all prunable) or a dict."""
    if isinstance(sparsity, dict):
        if layers is not None:
            raise ValueError("give either a per-layer sparsity dict or `layers`, not both")
        return dict(sparsity)
    names = list(prunable(model)) if layers is None else list(layers)
    return {n: sparsity for n in names}


def prune_per_tensor(model: nn.Module, sparsity, layers=None) -> dict[str, torch.Tensor]:
    """Prune each layer by its own weight magnitudes.

    sparsity: one fraction for every layer in `layers` (default: all Conv/Linear),
              or {layer name: fraction}. Returns {layer: keep-mask (weight's shape)}.
    The whole plan is checked first (fractions, layer names, masks only grow):
    a call prunes every layer of it or, on a ValueError/TypeError, none.
    """
    plan = _plan(model, sparsity, layers)
    for name, s in plan.items():  # validate everything before touching any weight
        s = check_fraction(f"sparsity for layer {name!r}", s)
        m = layer(model, name)
        _check_not_lower(name, m, n_zeros(s, m.weight.numel()))
    return {name: prune_layer(model, name, s) for name, s in plan.items()}


@torch.no_grad()
def prune_global(model: nn.Module, sparsity: float, layers=None) -> dict[str, torch.Tensor]:
    """Global magnitude pruning: the round(sparsity * N) smallest |w| over all
    `layers` together (default all Conv/Linear) become zero. Returns {layer: keep-mask}."""
    sparsity = check_fraction("sparsity", sparsity)
    names = list(prunable(model)) if layers is None else list(layers)
    if not names:
        raise ValueError("no layers to prune")
    modules = {n: layer(model, n) for n in names}
    scores = torch.cat([_scores(m).cpu() for m in modules.values()])
    k = n_zeros(sparsity, scores.numel())
    already = int((scores < 0).sum())
    if k < already:
        raise ValueError(f"model already has {already} pruned weights; sparsity={sparsity} "
                         f"({k} zeros) would un-prune weights (masks only grow)")
    keep = _lowest(scores, k)
    masks, start = {}, 0
    for name, m in modules.items():
        n = m.weight.numel()
        masks[name] = keep[start:start + n].view_as(m.weight)
        set_mask(m, masks[name])
        start += n
    return masks
