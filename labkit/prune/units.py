"""Unit pruning of a bias-free MLP, as a mask and as a smaller MLP: unit j of a Linear is row j
of its weight (out, in), ranked by L2 norm; every Linear but the logits is pruned by default."""
import torch
from torch import nn

from ..config import check_fraction
from ..models import MLP
from .magnitude import check_grow, lowest, n_zeros
from .masks import current_mask, layer, put, set_mask, take


def _linears(model: MLP) -> list[str]:
    """Names of the MLP's Linear layers, in order."""
    return [n for n, m in model.named_children() if isinstance(m, nn.Linear)]


def hidden_layers(model: MLP) -> list[str]:
    """Names of the Linear layers whose units can be removed (all but the last)."""
    if not isinstance(model, MLP):
        raise TypeError(f"unit pruning needs a labkit MLP, got {type(model).__name__}")
    if any(m.bias is not None for m in model.modules() if isinstance(m, nn.Linear)):
        raise ValueError("unit pruning needs Linear layers without bias (a removed unit outputs 0)")
    return _linears(model)[:-1]


@torch.no_grad()
def prune_units(model: MLP, sparsity: float, layers=None) -> dict[str, torch.Tensor]:
    """Zero the weight rows of the round(sparsity * out) lowest-L2 units of each of `layers`
    (default: every hidden layer), counting units pruned before (masks only grow); every layer
    is checked before any is pruned. Returns {layer: keep-mask (out, in)}."""
    sparsity = check_fraction("sparsity", sparsity)
    hidden = hidden_layers(model)
    modules = {}
    for name in hidden if layers is None else layers:
        m = modules[name] = layer(model, name)
        pruned = int((~current_mask(m).any(dim=1)).sum())
        check_grow(f"layer {name!r}", pruned, n_zeros(sparsity, m.out_features), sparsity, "units")
    masks = {}
    for name, m in modules.items():
        mask = current_mask(m)
        norms = (m.weight * mask).norm(dim=1).float().masked_fill(~mask.any(dim=1), -1.0)
        masks[name] = mask & lowest(norms, n_zeros(sparsity, m.out_features))[:, None]
        set_mask(m, masks[name])
    return masks


@torch.no_grad()
def shrink_mlp(model: MLP) -> tuple[MLP, list[torch.Tensor]]:
    """A physically smaller MLP without the units whose weight row is all zero, equal to `model`
    (ReLU(0) = 0), and each hidden layer's kept indices (k_i,); masks come along, sliced."""
    kept = [torch.nonzero(getattr(model, n).weight.detach().abs().sum(1) > 0).flatten()
            for n in hidden_layers(model)]
    small = MLP(hidden=tuple(len(k) for k in kept), in_features=model.in_features,
                num_classes=model.num_classes).to(next(model.parameters()).device)
    prev = None
    for name, rows in zip(_linears(model), [*kept, None]):
        take(getattr(model, name), getattr(small, name), rows, prev)
        prev = rows
    return small, kept


@torch.no_grad()
def expand_mlp(small: MLP, kept: list[torch.Tensor], hidden: tuple) -> MLP:
    """The masked MLP of the original `hidden` sizes equal to `small`: its masks are False
    outside the kept units and, inside, small's masks."""
    big = MLP(hidden=hidden, in_features=small.in_features, num_classes=small.num_classes)
    big = big.to(next(small.parameters()).device)
    prev = torch.arange(small.in_features, device=big.fc1.weight.device)
    for name, rows in zip(_linears(small), [*kept, None]):
        dst = getattr(big, name)
        rows = torch.arange(dst.out_features, device=dst.weight.device) if rows is None else rows
        put(getattr(small, name), dst, rows, prev, mask=True)
        prev = rows
    return big
