"""Unit (neuron) pruning of an MLP, as a mask and as a physically smaller MLP.

A unit of a Linear layer is one output: row j of its weight (out, in), the
"column" of the (in, out) matrix in the original study. Units are ranked by
the L2 norm of that weight vector; the lowest round(sparsity * out) units of
each layer are removed. By default every Linear layer but the last (the
logits) is pruned, as in the original study.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import check_fraction
from ..models import MLP
from .magnitude import _lowest, n_zeros
from .masks import copy_mask, current_mask, layer, set_mask


def hidden_layers(model: MLP) -> list[str]:
    """Names of the Linear layers whose units can be removed (all but the last)."""
    _check_mlp(model)
    names = [n for n, m in model.named_children() if isinstance(m, nn.Linear)]
    return names[:-1]


def _check_mlp(model) -> None:
    if not isinstance(model, MLP):
        raise TypeError(f"unit pruning needs a labkit MLP, got {type(model).__name__}")
    if any(m.bias is not None for m in model.modules() if isinstance(m, nn.Linear)):
        raise ValueError("unit pruning here assumes Linear layers without bias "
                         "(a removed unit must output exactly zero)")


def _unit_layer(model: MLP, name: str, sparsity: float) -> nn.Linear:
    """Layer `name`, checked: a Linear with at most round(sparsity * out) units
    (all-False rows of its mask) pruned already."""
    m = layer(model, name)
    if not isinstance(m, nn.Linear):
        raise TypeError(f"layer {name!r} is a {type(m).__name__}; unit pruning needs Linear")
    k = n_zeros(sparsity, m.out_features)
    already = int((~current_mask(m).any(dim=1)).sum())
    if k < already:
        raise ValueError(f"layer {name!r} already has {already} pruned units; sparsity={sparsity} "
                         f"asking for {k} pruned units would un-prune units (masks only grow)")
    return m


def _unit_scores(m: nn.Linear) -> torch.Tensor:
    """L2 norm of each unit's live weights (out,); pruned units (all-False
    mask rows) score -1, so they go first."""
    mask = current_mask(m)
    norms = (m.weight * mask).norm(dim=1).float()
    return torch.where(mask.any(dim=1), norms, torch.full_like(norms, -1.0))


@torch.no_grad()
def prune_units(model: MLP, sparsity: float, layers=None) -> dict[str, torch.Tensor]:
    """Zero the weight rows of the lowest-L2 units of each layer in `layers`
    (default: every hidden layer), round(sparsity * out) units per layer in all.

    Masks only grow: units pruned before stay pruned and count towards the
    total; asking for fewer raises a ValueError. Every layer is checked before
    any is pruned. Returns {layer: keep-mask (out, in)}.
    """
    sparsity = check_fraction("sparsity", sparsity)
    _check_mlp(model)
    names = hidden_layers(model) if layers is None else list(layers)
    modules = {name: _unit_layer(model, name, sparsity) for name in names}
    masks = {}
    for name, m in modules.items():
        keep_rows = _lowest(_unit_scores(m), n_zeros(sparsity, m.out_features))   # (out,)
        masks[name] = current_mask(m) & keep_rows[:, None]
        set_mask(m, masks[name])
    return masks


def kept_units(model: MLP) -> list[torch.Tensor]:
    """For each hidden layer, the indices of units whose weight row is not all zero."""
    return [torch.nonzero(getattr(model, n).weight.detach().abs().sum(1) > 0).flatten()
            for n in hidden_layers(model)]


@torch.no_grad()
def shrink_mlp(model: MLP) -> tuple[MLP, list[torch.Tensor]]:
    """A physically smaller MLP without the removed units, and the kept indices.

    Its outputs equal the masked model's: a unit whose incoming weights are all
    zero outputs ReLU(0) = 0, so dropping it and its outgoing column changes nothing.
    A masked layer's small twin carries its mask's kept rows and columns, so
    zeros inside the kept units stay held through fine-tuning.
    """
    kept = kept_units(model)
    small = MLP(hidden=tuple(len(k) for k in kept), in_features=model.in_features,
                num_classes=model.num_classes).to(next(model.parameters()).device)
    names = hidden_layers(model) + [[n for n, m in model.named_children()
                                     if isinstance(m, nn.Linear)][-1]]
    prev = None
    for i, name in enumerate(names):
        src, dst = getattr(model, name), getattr(small, name)
        w = src.weight
        rows = kept[i] if i < len(kept) else torch.arange(w.shape[0], device=w.device)
        w = w[rows]
        w = w[:, prev] if prev is not None else w
        dst.weight.copy_(w)
        copy_mask(src, dst, rows, prev)
        prev = rows
    return small, kept


@torch.no_grad()
def expand_mlp(small: MLP, kept: list[torch.Tensor], hidden: tuple) -> MLP:
    """The masked MLP of the original `hidden` sizes equivalent to `small`:
    its masks are False outside the kept units and, inside, small's masks."""
    big = MLP(hidden=hidden, in_features=small.in_features, num_classes=small.num_classes)
    big = big.to(next(small.parameters()).device)
    names = [n for n, m in small.named_children() if isinstance(m, nn.Linear)]
    prev = None
    for i, name in enumerate(names):
        dst = getattr(big, name)
        rows = (kept[i] if i < len(kept)
                else torch.arange(dst.weight.shape[0], device=dst.weight.device))
        cols = (prev if prev is not None
                else torch.arange(dst.weight.shape[1], device=dst.weight.device))
        mask = torch.zeros_like(dst.weight, dtype=torch.bool)
        mask[rows[:, None], cols[None, :]] = current_mask(getattr(small, name))
        dst.weight.zero_()
        dst.weight[rows[:, None], cols[None, :]] = getattr(small, name).weight
        set_mask(dst, mask)
        prev = rows
    return big
