"""N:M semi-structured magnitude pruning (2:4 by default).

In every group of ``m`` consecutive weights along a layer's INPUT dimension,
the ``m - n`` smallest |w| are masked (``weight_mask`` buffers, so
labkit.train.fine_tune keeps them): 2:4 leaves exactly 2 zeros in every group
of 4, a global sparsity of 50 % on the pruned layers. This is the pattern
NVIDIA's sparse tensor cores (Ampere and later) accelerate, and what
``torch.sparse.to_sparse_semi_structured`` accepts.

Groups: a Linear weight (out, in) is grouped along ``in``; a Conv weight
(out, in, kh, kw) along its input channels at each kernel position (the
order of a channels-last implicit GEMM), so ``in`` must be a multiple of m.
Layers whose input dimension is not a multiple of m (e.g. a first conv on 3
RGB channels) are skipped by default and rejected when named explicitly.

Masks only grow: weights already masked stay masked. In each group the n
largest LIVE weights are kept; a group with fewer than n live weights keeps
only those, so every group still has at most n nonzeros (and a layer pruned
before may end above 50 % sparsity).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.sparse import to_sparse_semi_structured

from .masks import current_mask, layer, prunable, set_mask


def _check_nm(n, m) -> tuple[int, int]:
    for name, v in (("n", n), ("m", m)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name}={v!r} must be an integer")
    if not (m >= 2 and 0 < n < m):
        raise ValueError(f"n:m = {n}:{m} must satisfy 0 < n < m and m >= 2 "
                         "(n = weights kept per group of m)")
    return n, m


def _grouped(w: torch.Tensor, m: int) -> torch.Tensor:
    """w (out, in) or (out, in, kh, kw) -> groups (G, m) along the input dim."""
    if w.ndim == 4:
        w = w.permute(0, 2, 3, 1)            # (out, kh, kw, in): input channels innermost
    return w.reshape(-1, m)


def _ungrouped(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_grouped` for a tensor shaped like `like`."""
    if like.ndim == 4:
        o, i, kh, kw = like.shape
        return g.reshape(o, kh, kw, i).permute(0, 3, 1, 2).contiguous()
    return g.reshape(like.shape)


def fits(module: nn.Module, m: int = 4) -> bool:
    """Whether `module`'s input dimension splits into groups of m."""
    return module.weight.ndim in (2, 4) and module.weight.shape[1] % m == 0


def nm_layers(model: nn.Module, m: int = 4) -> list[str]:
    """The Conv/Linear layers whose input dimension is a multiple of m (the default targets)."""
    return [name for name, mod in prunable(model).items() if fits(mod, m)]


@torch.no_grad()
def nm_mask(weight: torch.Tensor, n: int = 2, m: int = 4,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Bool keep-mask (weight's shape) keeping the n largest |w| of every group
    of m along the input dim. With `mask` (weight's shape, True = live), only
    live weights are kept: the result is the N:M choice among them AND `mask`."""
    n, m = _check_nm(n, m)
    if weight.ndim not in (2, 4) or weight.shape[1] % m:
        dim = weight.shape[1] if weight.ndim > 1 else '-'
        raise ValueError(f"weight of shape {tuple(weight.shape)}: its input dim {dim}"
                         f" is not a multiple of m={m}")
    score = weight.detach().abs().float()
    if mask is not None:
        score = torch.where(mask, score, torch.full_like(score, -1.0))
    g = _grouped(score, m)                                   # (G, m)
    top = torch.topk(g, n, dim=1, sorted=False).indices      # (G, n)
    keep = torch.zeros_like(g, dtype=torch.bool).scatter_(1, top, True)
    keep = _ungrouped(keep, weight)
    return keep if mask is None else keep & mask.to(device=keep.device, dtype=torch.bool)


@torch.no_grad()
def prune_nm(model: nn.Module, n: int = 2, m: int = 4, layers=None) -> dict[str, torch.Tensor]:
    """N:M magnitude pruning of `layers` (default: every Conv/Linear whose input
    dim is a multiple of m), on top of any mask a layer has (masks only grow).
    Every layer is checked before any is pruned. Returns {layer: keep-mask (weight's shape)}."""
    n, m = _check_nm(n, m)
    names = nm_layers(model, m) if layers is None else list(layers)
    if not names:
        raise ValueError(f"no layer of this {type(model).__name__} has an input dim "
                         f"divisible by m={m}")
    modules = {name: layer(model, name) for name in names}
    for name, mod in modules.items():
        if not fits(mod, m):
            raise ValueError(f"layer {name!r} has input dim {mod.weight.shape[1]}, "
                             f"not a multiple of m={m}; layers that fit: {nm_layers(model, m)}")
    masks = {}
    for name, mod in modules.items():
        masks[name] = nm_mask(mod.weight, n, m, current_mask(mod))
        set_mask(mod, masks[name])
    return masks


def is_nm(weight: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """True when every group of m along the input dim has at most n nonzeros."""
    n, m = _check_nm(n, m)
    return bool(((_grouped(weight.detach() != 0, m)).sum(1) <= n).all())


@torch.no_grad()
def semi_structured_latency(shapes=((1000, 784), (4096, 4096)), batch: int = 256,
                            dtype=torch.float16, min_run_time: float = 0.5) -> list[dict] | None:
    """GPU only: latency of F.linear with a 2:4-pruned weight, dense vs torch's
    semi-structured sparse kernels (to_sparse_semi_structured), for each
    (out, in) in `shapes` and a (batch, in) input. None without CUDA.
    Returns [{shape, batch, dense_ms, sparse_ms, speedup}]."""
    if not torch.cuda.is_available():
        return None
    from torch.utils import benchmark  # not at the top: importing it logs a CUDA_HOME notice on CPU

    rows = []
    for out_f, in_f in shapes:
        w = torch.randn(out_f, in_f, device="cuda", dtype=dtype)
        w = w * nm_mask(w, 2, 4).to(dtype)
        ws = to_sparse_semi_structured(w)
        x = torch.randn(batch, in_f, device="cuda", dtype=dtype)
        f = torch.nn.functional.linear
        t = {k: benchmark.Timer("f(x, W)", globals=dict(f=f, x=x, W=W)).blocked_autorange(
            min_run_time=min_run_time).median for k, W in (("dense", w), ("sparse", ws))}
        rows.append(dict(shape=(out_f, in_f), batch=batch, dense_ms=1e3 * t["dense"],
                         sparse_ms=1e3 * t["sparse"], speedup=t["dense"] / t["sparse"]))
    return rows
