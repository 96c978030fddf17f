"""N:M semi-structured magnitude pruning (2:4 by default): each group of m weights along the
input dim (a conv's input channels at one kernel position) keeps its n largest live |w|."""
import torch
from torch import nn

from .masks import current_mask, layer, prunable, set_mask

def _check_nm(n, m) -> tuple[int, int]:
    """(n, m) checked: integers with 0 < n < m and m >= 2."""
    for name, v in (("n", n), ("m", m)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name}={v!r} must be an integer")
    if not (m >= 2 and 0 < n < m):
        raise ValueError(f"n:m = {n}:{m} must satisfy 0 < n < m and m >= 2 "
                         "(n = weights kept per group of m)")
    return n, m

def _fits(w: torch.Tensor, m: int) -> bool:
    """Whether weight `w`, (out, in) or (out, in, kh, kw), splits into groups of m along `in`."""
    return w.ndim in (2, 4) and w.shape[1] % m == 0

def _grouped(w: torch.Tensor, m: int) -> torch.Tensor:
    """w (out, in) or (out, in, kh, kw) -> groups (G, m) along the input dim."""
    return (w.permute(0, 2, 3, 1) if w.ndim == 4 else w).reshape(-1, m)   # input dim innermost

def nm_mask(weight: torch.Tensor, n: int = 2, m: int = 4,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Keep-mask (bool, weight's shape) of the n largest |w| in every group of m, chosen among
    the live weights of `mask` (weight's shape) if given."""
    n, m = _check_nm(n, m)
    if not _fits(weight, m):
        dim = weight.shape[1] if weight.ndim > 1 else '-'
        raise ValueError(f"weight of shape {tuple(weight.shape)}: its input dim {dim}"
                         f" is not a multiple of m={m}")
    score = weight.detach().abs().float()
    g = _grouped(score if mask is None else score.masked_fill(~mask, -1.0), m)   # (G, m)
    top = torch.topk(g, n, dim=1, sorted=False).indices      # (G, n)
    keep = torch.zeros_like(g, dtype=torch.bool).scatter_(1, top, True)
    if weight.ndim == 4:                                     # back to (out, in, kh, kw)
        o, i, kh, kw = weight.shape
        keep = keep.reshape(o, kh, kw, i).permute(0, 3, 1, 2).contiguous()
    keep = keep.reshape(weight.shape)
    return keep if mask is None else keep & mask.to(device=keep.device, dtype=torch.bool)

def prune_nm(model: nn.Module, n: int = 2, m: int = 4, layers=None) -> dict[str, torch.Tensor]:
    """N:M pruning of `layers` (default: every Conv/Linear whose input dim m divides) on top of
    any mask; all are checked before any is pruned. Returns {layer: keep-mask}."""
    n, m = _check_nm(n, m)
    fit = [name for name, mod in prunable(model).items() if _fits(mod.weight, m)]
    modules = {}
    for name in fit if layers is None else layers:
        modules[name] = mod = layer(model, name)
        if not _fits(mod.weight, m):
            raise ValueError(f"layer {name!r} has input dim {mod.weight.shape[1]}, "
                             f"not a multiple of m={m}; layers that fit: {fit}")
    if not modules:
        raise ValueError(f"no layer of this {type(model).__name__} has an input dim "
                         f"divisible by m={m}")
    masks = {name: nm_mask(mod.weight, n, m, current_mask(mod)) for name, mod in modules.items()}
    for name, mod in modules.items():
        set_mask(mod, masks[name])
    return masks

def is_nm(weight: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """True when every group of m along the input dim has at most n nonzeros."""
    n, m = _check_nm(n, m)
    return bool((_grouped(weight.detach() != 0, m).sum(1) <= n).all())
