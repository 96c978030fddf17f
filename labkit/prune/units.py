"""Unit pruning of a bias-free MLP (unit j of a Linear: weight row j), masked or physical."""
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

def prune_units(model: MLP, sparsity: float, layers=None) -> dict[str, torch.Tensor]:
    """Prune round(sparsity * out) units (lowest L2, pruned ones first) of each of `layers`
    (default: every hidden layer); all are checked before any is pruned. {layer: keep-mask}."""
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
        norms = (m.weight.detach() * mask).norm(dim=1).float().masked_fill(~mask.any(dim=1), -1.0)
        masks[name] = mask & lowest(norms, n_zeros(sparsity, m.out_features))[:, None]
        set_mask(m, masks[name])
    return masks

def shrink_mlp(model: MLP) -> tuple[MLP, list[torch.Tensor]]:
    """(smaller MLP without the all-zero units, equal to `model`; kept indices (k_i,) per layer)."""
    kept = [torch.nonzero(getattr(model, n).weight.detach().abs().sum(1) > 0).flatten()
            for n in hidden_layers(model)]
    small = MLP(hidden=tuple(len(k) for k in kept), in_features=model.in_features,
                num_classes=model.num_classes).to(next(model.parameters()).device)
    for name, rows, cols in zip(_linears(model), [*kept, None], [None, *kept]):
        take(getattr(model, name), getattr(small, name), rows, cols)
    return small, kept

def expand_mlp(small: MLP, kept: list[torch.Tensor], hidden: tuple) -> MLP:
    """The masked MLP of sizes `hidden` equal to `small`, masked outside the `kept` units."""
    big = MLP(hidden=hidden, in_features=small.in_features, num_classes=small.num_classes)
    big = big.to(next(small.parameters()).device)
    dev = big.fc1.weight.device
    rows = [*kept, torch.arange(big.num_classes, device=dev)]
    cols = [torch.arange(small.in_features, device=dev), *kept]
    for name, r, c in zip(_linears(small), rows, cols):
        put(getattr(small, name), getattr(big, name), r, c, mask=True)
    return big
