"""Masks that keep pruned weights at exactly zero.

A pruned layer carries a boolean buffer ``weight_mask`` (True = kept, same
shape as its weight), the convention of torch.nn.utils.prune. Its weight is
zeroed where the mask is False; :func:`labkit.train.fit` re-applies every mask
after each optimiser step, so pruned weights stay exactly zero. Masks only
grow: :func:`set_mask` refuses a mask that would un-prune a weight.

Counted (prunable) weights are the weights of Conv and Linear layers.
"""
from __future__ import annotations

import torch
from torch import nn

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


def prunable(model: nn.Module) -> dict[str, nn.Module]:
    """{name: module} of every Conv/Linear layer, in model order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE)}


def layer(model: nn.Module, name: str) -> nn.Module:
    """The prunable layer called `name`; a clear error for unknown or non-prunable names."""
    if not isinstance(name, str):
        raise TypeError(f"layer name {name!r} must be a string")
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"unknown layer {name!r}; prunable layers are {list(prunable(model))}")
    m = modules[name]
    if not isinstance(m, PRUNABLE):
        raise TypeError(f"layer {name!r} is a {type(m).__name__}; only "
                        f"{tuple(t.__name__ for t in PRUNABLE)} weights can be pruned")
    return m


@torch.no_grad()
def set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Attach `mask` (bool, weight's shape; True = keep) and zero the pruned weights.

    Masks only grow: where the layer already has a mask, `mask` must be False
    wherever the old one is (combine them first: ``mask & module.weight_mask``);
    otherwise a ValueError, and nothing changes.
    """
    if mask.shape != module.weight.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != "
                         f"weight shape {tuple(module.weight.shape)}")
    mask = mask.to(device=module.weight.device, dtype=torch.bool)
    if hasattr(module, "weight_mask"):
        regrown = int((mask & ~module.weight_mask).sum())
        if regrown:
            raise ValueError(f"the new mask would un-prune {regrown} weights of this layer (weight "
                             f"{tuple(module.weight.shape)}); masks only grow: pass new & old mask")
        module.weight_mask = mask
    else:
        module.register_buffer("weight_mask", mask)
    module.weight.mul_(mask)


@torch.no_grad()
def copy_mask(src: nn.Module, dst: nn.Module, rows=None, cols=None) -> None:
    """Give `dst` the mask of `src` restricted to weight rows `rows` (k,) and
    columns `cols` (j,) (None: all), i.e. src.weight_mask[rows][:, cols], of
    dst.weight's shape. Nothing when `src` has no mask."""
    if not hasattr(src, "weight_mask"):
        return
    mask = src.weight_mask if rows is None else src.weight_mask[rows.to(src.weight_mask.device)]
    mask = mask if cols is None else mask[:, cols.to(mask.device)]
    set_mask(dst, mask.clone())


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{layer name: bool mask} of every masked layer."""
    return {n: m.weight_mask for n, m in prunable(model).items() if hasattr(m, "weight_mask")}


def current_mask(module: nn.Module) -> torch.Tensor:
    """The layer's mask, or all-True when it has none."""
    if hasattr(module, "weight_mask"):
        return module.weight_mask
    return torch.ones_like(module.weight, dtype=torch.bool)


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
    for m in prunable(model).values():
        if hasattr(m, "weight_mask"):
            m.weight.mul_(m.weight_mask)


def remove_masks(model: nn.Module) -> nn.Module:
    """Drop the mask buffers; the zeros stay in the weights. Returns the model."""
    for m in prunable(model).values():
        if hasattr(m, "weight_mask"):
            del m._buffers["weight_mask"]
    return model


def weight_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without mask buffers: what a deployed model would store."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("weight_mask")}
