"""Sweeps and sensitivity scans (prune a copy or restore exactly, evaluate), and lab 02's
planning of per-layer sparsities from the scanned curves."""
import copy
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm  # widgets in Jupyter, text elsewhere

from .config import check_fraction, progress as _progress
from .prune.magnitude import n_zeros
from .prune.masks import layer, prunable

def sweep(model: nn.Module, prune: Callable, sparsities: list, evaluate: Callable,
          progress: bool = True, desc: str = "sweep") -> list[dict]:
    """[{'sparsity': s, 'accuracy': evaluate(copy), 'model': copy}]: per s, prune(copy, s)."""
    out = []
    for s in tqdm(sparsities, desc=desc, disable=not (progress and _progress()), mininterval=2):
        m = copy.deepcopy(model)
        prune(m, s)
        out.append(dict(sparsity=s, accuracy=evaluate(m), model=m))
    return out

@torch.no_grad()
def scan(model: nn.Module, prune_layer: Callable, sparsities: list, evaluate: Callable,
         layers: list | None = None, progress: bool = True) -> dict[str, list[float]]:
    """{layer: [accuracy with only that layer pruned to s, per s]}; its weight and mask restored."""
    names = list(prunable(model)) if layers is None else list(layers)
    curves = {}
    for name in tqdm(names, desc="sensitivity scan", disable=not (progress and _progress()),
                     mininterval=2):
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

def safe_sparsity(sparsities: list, accuracies: list, baseline: float,
                  max_drop: float = 0.01) -> float:
    """The largest sparsity before accuracy first falls more than `max_drop` below `baseline`."""
    best = float("nan")
    for s, a in zip(sparsities, accuracies):
        if baseline - a > max_drop:
            break
        best = s
    return best

def _check_target(target) -> None:
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ValueError(f"target={target!r} must be a fraction of the dense size in (0, 1]")

def plan_size(model: nn.Module, plan: dict) -> float:
    """Fraction of the dense size (nonzero / all parameters) left after pruning to `plan`."""
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    for name, s in plan.items():
        w = layer(model, name).weight
        s = check_fraction(f"sparsity for layer {name!r}", s)
        alive = int(torch.count_nonzero(w))
        nonzero += min(alive, w.numel() - n_zeros(s, w.numel())) - alive
    return nonzero / total

def _drop(sparsities: list, accs: list, baseline: float) -> Callable[[float], float]:
    """A layer's predicted drop f(s): linear through (0, 0) and the scanned points, never < 0."""
    xs = [0.0] + [float(s) for s in sparsities if s > 0]
    ys = [0.0] + [max(0.0, baseline - a) for s, a in zip(sparsities, accs) if s > 0]
    def f(s: float) -> float:
        for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
            if s <= x1:
                return y0 + (y1 - y0) * (s - x0) / (x1 - x0)
        return ys[-1]
    return f

def predicted_drop(curves: dict, sparsities: list, plan: dict, baseline: float) -> float:
    """Sum of the drops each layer's curve predicts at its planned sparsity (additivity)."""
    return sum(_drop(sparsities, curves[n], baseline)(s) for n, s in plan.items() if n in curves)

def plan_for_size(model: nn.Module, curves: dict, sparsities: list, target: float, baseline: float,
                  max_sparsity: float | None = None, step: float = 0.01) -> dict[str, float]:
    """{layer: sparsity} bringing `model` to `target` x its dense size with the least predicted
    drop: greedily, the cheapest step per removed weight first, up to the largest scanned one."""
    if not isinstance(curves, dict) or not curves:
        raise ValueError("curves must be a non-empty dict {layer name: [accuracy per sparsity]}")
    scanned = [check_fraction("sparsity in the scan grid", s) for s in sparsities]
    if scanned != sorted(scanned):
        raise ValueError(f"sparsities must be increasing, got {list(sparsities)}")
    for name, accs in curves.items():
        layer(model, name)   # ValueError naming an unknown layer and the prunable ones
        if len(accs) != len(sparsities):
            raise ValueError(f"curve of {name!r} has {len(accs)} points "
                             f"for {len(sparsities)} sparsities")
    _check_target(target)
    total = sum(p.numel() for p in model.parameters())
    sizes = {n: layer(model, n).weight.numel() for n in curves}
    drops = {n: _drop(sparsities, curves[n], baseline) for n in curves}
    top = max([0.0, *scanned])   # the largest scanned sparsity
    if max_sparsity is not None:
        top = min(top, float(max_sparsity))
    plan = dict.fromkeys(curves, 0.0)
    need = plan_size(model, plan) * total - target * total  # weights still to remove
    if need > sum(sizes[n] * top for n in curves) + 0.5:
        best = plan_size(model, dict.fromkeys(curves, top))
        raise ValueError(f"target={target} is out of reach: pruning every scanned layer to its "
                         f"largest sparsity leaves {best:.4f} of the dense size")
    grid = [round(k * step, 10) for k in range(1, int(top / step + 1e-9) + 1)] + [top]
    while need > 0.5:
        best = None  # (cost per removed weight, layer, next sparsity)
        for n in curves:
            s0, d0 = plan[n], drops[n](plan[n])
            for s1 in [s for s in grid if s > s0 + 1e-12]:
                cost = (drops[n](s1) - d0) / (sizes[n] * (s1 - s0))
                if best is None or cost < best[0] - 1e-15:
                    best = (cost, n, s1)
        if best is None:
            break
        _, n, s1 = best
        removed = sizes[n] * (s1 - plan[n])
        if removed >= need:  # cut the last move so the size lands on the target
            s1 = plan[n] + need / sizes[n]
            removed = need
        plan[n] = s1
        need -= removed
    return {n: round(s, 6) for n, s in plan.items()}

def iterate_sparsity(previous: float, beta: float) -> float:
    """s_new = s_prev + (1 - s_prev) x beta: prune a further `beta` of the live weights."""
    previous = check_fraction("previous sparsity", previous)
    return previous + (1 - previous) * check_fraction("beta", beta)

def choose_betas(curves: dict, betas: list, baseline: float,
                 max_drop: float = 0.01) -> dict[str, float]:
    """{layer: the largest beta within `max_drop` of `baseline` (0 if none)} of each curve."""
    safe = {n: safe_sparsity(betas, accs, baseline, max_drop) for n, accs in curves.items()}
    return {n: 0.0 if b != b else float(b) for n, b in safe.items()}  # NaN: none stays within

def scale_plan(model: nn.Module, plan: dict, target: float, tol: float = 1e-4) -> dict[str, float]:
    """`plan` moved to `target` x the dense size keeping its shape: s' = s + (1 - s) u (or, to
    grow, s (1 + u), u < 0), one u for all layers found by bisection to within `tol`."""
    _check_target(target)
    def moved(u: float) -> dict:
        return {n: (s + (1 - s) * u if u >= 0 else s * (1 + u)) for n, s in plan.items()}
    lo, hi = -1.0, 1.0 - 1e-6
    if plan_size(model, moved(hi)) > target + tol:
        raise ValueError(f"target={target} is out of reach for this plan (its layers cannot go "
                         f"below {plan_size(model, moved(hi)):.4f} of the dense size)")
    for _ in range(60):
        mid = (lo + hi) / 2
        if plan_size(model, moved(mid)) > target:
            lo = mid
        else:
            hi = mid
        if abs(plan_size(model, moved(hi)) - target) <= tol:
            break
    return {n: round(s, 6) for n, s in moved(hi).items()}
