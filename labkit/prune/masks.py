"""Masks: a pruned Conv/Linear layer has a bool buffer ``weight_mask`` (True = kept, weight's
shape), re-applied by labkit.train.fit after each step. Masks only grow (:func:`set_mask`)."""
import torch
from torch import nn

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)

def prunable(model: nn.Module) -> dict[str, nn.Module]:
    """{name: module} of every Conv/Linear layer (the counted weights), in model order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE)}

def layer(model: nn.Module, name: str) -> nn.Module:
    """The prunable layer called `name`; a clear error for unknown or non-prunable names."""
    if not isinstance(name, str):
        raise TypeError(f"layer name {name!r} must be a string")
    module = dict(model.named_modules()).get(name)
    if module is None:
        raise ValueError(f"unknown layer {name!r}; prunable layers are {list(prunable(model))}")
    if not isinstance(module, PRUNABLE):
        raise TypeError(f"layer {name!r} is a {type(module).__name__}; only "
                        f"{tuple(t.__name__ for t in PRUNABLE)} weights can be pruned")
    return module

def current_mask(module: nn.Module) -> torch.Tensor:
    """The layer's mask, or all-True when it has none."""
    mask = getattr(module, "weight_mask", None)
    return torch.ones_like(module.weight, dtype=torch.bool) if mask is None else mask

def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{layer name: bool mask} of every masked layer."""
    return {n: m.weight_mask for n, m in prunable(model).items() if hasattr(m, "weight_mask")}

@torch.no_grad()
def set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Attach `mask` (bool, weight's shape), zero the pruned weights. Masks only grow: un-pruning
    any weight raises a ValueError (pass new & old) and changes nothing."""
    if mask.shape != module.weight.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != weight {tuple(module.weight.shape)}")
    mask = mask.to(device=module.weight.device, dtype=torch.bool)
    regrown = int((mask & ~current_mask(module)).sum())
    if regrown:
        raise ValueError(f"mask would un-prune {regrown} weights of a layer with weight "
                         f"{tuple(module.weight.shape)} (masks only grow: pass new & old)")
    module.register_buffer("weight_mask", mask)   # replaces the old mask buffer, if any
    module.weight.mul_(mask)

@torch.no_grad()
def take(src: nn.Module, dst: nn.Module, rows=None, cols=None) -> None:
    """dst.weight (and mask, if any) = src's at rows (k,) x cols (j,) (None: all)."""
    w = src.weight if rows is None else src.weight[rows]
    dst.weight.copy_(w if cols is None else w[:, cols])
    if hasattr(src, "weight_mask"):
        mask = src.weight_mask if rows is None else src.weight_mask[rows.to(src.weight_mask.device)]
        set_mask(dst, (mask if cols is None else mask[:, cols.to(mask.device)]).clone())

@torch.no_grad()
def put(small: nn.Module, big: nn.Module, rows, cols, mask: bool = False) -> None:
    """Inverse of :func:`take`: big.weight = small's at rows (k,) x cols (j,), 0 elsewhere; big's
    mask (if small has one, or `mask`) = small's (or all-True) there, False elsewhere."""
    at = rows[:, None], cols[None, :]
    big.weight.zero_()
    big.weight[at] = small.weight
    if mask or hasattr(small, "weight_mask"):
        keep = torch.zeros_like(big.weight, dtype=torch.bool)
        keep[at] = current_mask(small)
        set_mask(big, keep)

def count_weights(model: nn.Module) -> tuple[int, int]:
    """(nonzero, total) over all counted (Conv/Linear) weights."""
    weights = [m.weight for m in prunable(model).values()]
    return sum(int(torch.count_nonzero(w)) for w in weights), sum(w.numel() for w in weights)

def global_sparsity(model: nn.Module) -> float:
    """Zeros / elements over all counted (Conv/Linear) weights."""
    nonzero, total = count_weights(model)
    return (total - nonzero) / max(1, total)

@torch.no_grad()
def enforce(model: nn.Module) -> None:
    """Zero every masked weight again (after an optimiser step, a load, ...)."""
    for name, mask in get_masks(model).items():
        model.get_submodule(name).weight.mul_(mask)

def remove_masks(model: nn.Module) -> nn.Module:
    """Drop the mask buffers; the zeros stay in the weights. Returns the model."""
    for name in get_masks(model):
        del model.get_submodule(name)._buffers["weight_mask"]
    return model

def weight_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without mask buffers: what a deployed model would store."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("weight_mask")}

@torch.no_grad()
def max_difference(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """max |a(x) - b(x)| in eval mode (x moved to a's device); training modes are restored."""
    modes = [(m, m.training) for m in (*a.modules(), *b.modules())]
    try:
        x = x.to(next(a.parameters(), x).device)
        ya, yb = a.eval()(x), b.eval()(x)
        if ya.shape != yb.shape:
            raise ValueError(f"outputs of shapes {tuple(ya.shape)} and {tuple(yb.shape)} differ")
        return float((ya - yb).abs().max())
    finally:
        for m, mode in modes:
            m.training = mode
