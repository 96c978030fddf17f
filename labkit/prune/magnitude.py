"""Magnitude (L1) pruning, per tensor and global: round(sparsity * n) of the n weights are zero
after the call; weights pruned before rank below every live one, so they stay pruned."""
import torch
from torch import nn

from ..config import check_fraction
from .masks import current_mask, layer, prunable, set_mask

def n_zeros(sparsity: float, n: int) -> int:
    """How many of `n` weights are zero at `sparsity`: round(sparsity * n)."""
    return int(round(sparsity * n))

def lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask (bool, scores' shape (n,)) dropping the k lowest scores (ties: lowest index)."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[torch.argsort(scores, stable=True)[:k]] = False
    return keep

def check_grow(where: str, already: int, k: int, sparsity: float, what: str = "weights") -> None:
    """ValueError when `k` pruned `what` would un-prune some of the `already` pruned ones."""
    if k < already:
        raise ValueError(f"{where} already has {already} pruned {what}; sparsity={sparsity} asks "
                         f"for {k} and would un-prune {what} (masks only grow)")

def _scores(module: nn.Module) -> torch.Tensor:
    """|w| flattened (n,), already-pruned weights at -1 so they go first."""
    s = module.weight.detach().abs().flatten().float()
    return s.masked_fill(~current_mask(module).flatten(), -1.0)

def _checked(model: nn.Module, name: str, sparsity) -> tuple[nn.Module, int]:
    """(layer, zeros) to prune `name` to `sparsity`, checked: fraction, name, masks only grow."""
    sparsity = check_fraction(f"sparsity for layer {name!r}", sparsity)
    m = layer(model, name)
    k = n_zeros(sparsity, m.weight.numel())
    check_grow(f"layer {name!r}", int((~current_mask(m)).sum()), k, sparsity)
    return m, k

def prune_layer(model: nn.Module, name: str, sparsity: float) -> torch.Tensor:
    """Prune layer `name` to `sparsity` by |weight|; returns its bool keep-mask (weight's shape)."""
    m, k = _checked(model, name, sparsity)
    mask = lowest(_scores(m), k).view_as(m.weight)
    set_mask(m, mask)
    return mask

def prune_per_tensor(model: nn.Module, sparsity, layers=None) -> dict[str, torch.Tensor]:
    """Prune each of `layers` (default all Conv/Linear) to `sparsity`, or to {layer: sparsity},
    by its own |w|; all are checked before any is pruned. Returns {layer: keep-mask}."""
    if isinstance(sparsity, dict) and layers is not None:
        raise ValueError("give either a per-layer sparsity dict or `layers`, not both")
    plan = (dict(sparsity) if isinstance(sparsity, dict)
            else dict.fromkeys(prunable(model) if layers is None else layers, sparsity))
    for name, s in plan.items():
        _checked(model, name, s)
    return {name: prune_layer(model, name, s) for name, s in plan.items()}

def prune_global(model: nn.Module, sparsity: float, layers=None) -> dict[str, torch.Tensor]:
    """Prune the N weights of `layers` (default all Conv/Linear) together by |w|. {layer: mask}."""
    sparsity = check_fraction("sparsity", sparsity)
    modules = {n: layer(model, n) for n in (prunable(model) if layers is None else layers)}
    if not modules:
        raise ValueError("no layers to prune")
    scores = torch.cat([_scores(m).cpu() for m in modules.values()])
    k = n_zeros(sparsity, scores.numel())
    check_grow("model", int((scores < 0).sum()), k, sparsity)
    keep = lowest(scores, k).split([m.weight.numel() for m in modules.values()])
    masks = {name: kept.view_as(m.weight) for (name, m), kept in zip(modules.items(), keep)}
    for name, m in modules.items():
        set_mask(m, masks[name])
    return masks
