"""Greedy layer-wise filter pruning of the VGG (a simplified ThiNet): each round tries, for
every conv, removing ``step`` x its channels (lowest filter L2), commits the candidate that
loses least validation accuracy, optionally fine-tunes, until the cost falls to each target.
Every step is a physically smaller VGG; ``keep`` maps it to the original's channels."""
from __future__ import annotations

import copy
import itertools
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm  # widgets in Jupyter, text elsewhere

from .. import config, train
from ..config import check_choice, check_int
from ..models import VGG
from ..prune.channels import expand_vgg, l2_ranking, shrink_vgg
from ..prune.magnitude import prune_global

COSTS = ("params", "macs")

def vgg_macs(model: VGG, input_shape: tuple = (3, 32, 32)) -> int:
    """Multiply-accumulates of one (C, H, W) image (what metrics.macs counts), from shapes."""
    _, h, w = input_shape
    total = 0
    for m in model.backbone:
        if isinstance(m, torch.nn.Conv2d):
            total += m.weight.numel() * h * w          # 3x3, stride 1, padding 1
        elif isinstance(m, torch.nn.MaxPool2d):
            h, w = h // 2, w // 2
    return total + model.classifier.weight.numel()

def cost(model: VGG, by: str, input_shape: tuple = (3, 32, 32)) -> int:
    """The model's parameter count (by='params') or MACs of one image (by='macs')."""
    check_choice("by", by, COSTS)
    if by == "params":
        return sum(p.numel() for p in model.parameters())
    return vgg_macs(model, input_shape)

@dataclass
class Step:
    """One committed removal: round, conv index, channels removed, channels after it, cost
    ratio to the dense model, accuracy after the removal and after the fine-tune (acc_tuned)."""
    round: int
    layer: int
    removed: int
    channels: tuple
    ratio: float
    acc: float
    acc_tuned: float | None = None

@dataclass
class GreedyResult:
    """A VGG reached by greedy pruning: model, keep ({conv: kept original channels}), the
    original channels, the cost `by`, the target fraction, the ratio reached, the steps."""
    model: VGG
    keep: dict
    channels: tuple
    by: str
    target: float
    ratio: float
    steps: list = field(default_factory=list)

    def expand(self) -> VGG:
        """The equivalent masked VGG of the original shape."""
        return expand_vgg(self.model, self.keep, self.channels)

def _check(model, targets, by, step, min_channels) -> list[float]:
    if not isinstance(model, VGG):
        raise TypeError(f"greedy pruning needs a labkit VGG, got {type(model).__name__}")
    check_choice("by", by, COSTS)
    targets = [targets] if isinstance(targets, (int, float)) else list(targets)
    if not targets:
        raise ValueError("targets is empty; give fractions of the dense cost in (0, 1]")
    for t in targets:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            raise ValueError(f"target={t!r} must be a fraction of the dense {by} in (0, 1]")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step < 1:
        raise ValueError(f"step={step!r} must be a fraction in (0, 1) of a layer's channels")
    check_int("min_channels", min_channels, 1)
    return sorted(float(t) for t in targets)[::-1]

def candidates(model: VGG, step: float, min_channels: int = 1) -> dict[int, torch.Tensor]:
    """{conv index: kept local channels} removing round(step * C_i) (at least 1) channels of
    lowest filter norm; convs that would drop below `min_channels` are left out."""
    out = {}
    for i, c in enumerate(model.channels):
        k = max(1, int(round(step * c)))
        if c - k >= min_channels:
            out[i] = l2_ranking(model, i, by="filter")[:c - k].sort().values
    return out

def greedy_prune(model: VGG, evaluate: Callable, targets, *, by: str = "params", step: float = 0.2,
                 finetune: Callable | None = None, min_channels: int = 1,
                 input_shape: tuple = (3, 32, 32), progress: bool = True) -> list[GreedyResult]:
    """Greedy filter pruning of a copy of `model` down to each of `targets` (fractions of the
    dense cost, by='params' or 'macs'). evaluate: model -> accuracy on a fixed validation set;
    finetune: model -> None, in place after each step (None: none). One GreedyResult per
    target, largest first: the model when its ratio first fell to it. Ties between candidates:
    the one saving more cost, then the lower layer."""
    pending = _check(model, targets, by, step, min_channels)
    small = copy.deepcopy(model)
    keep = {i: torch.arange(c) for i, c in enumerate(model.channels)}
    dense_cost = cost(model, by, input_shape)
    ratio, steps, results, rnd = 1.0, [], [], 0
    bar = tqdm(desc=f"greedy ({by})", disable=not (progress and config.progress()), file=sys.stdout,
               mininterval=2)
    while True:
        while pending and ratio <= pending[0]:
            kept = {i: k.clone() for i, k in keep.items()}
            results.append(GreedyResult(copy.deepcopy(small), kept, tuple(model.channels), by,
                                        pending.pop(0), ratio, list(steps)))
        if not pending:
            break
        options = candidates(small, step, min_channels)
        if not options:
            raise ValueError(f"target={pending[0]} of the dense {by} is unreachable with "
                             f"min_channels={min_channels}: every conv is at its minimum "
                             f"at {ratio:.3f}")
        rnd += 1
        scored = []
        for i, local in options.items():
            cand = shrink_vgg(small, {i: local})
            scored.append(((evaluate(cand), -cost(cand, by, input_shape), -i), i, local, cand))
        (acc, neg_cost, _), i, local, cand = max(scored, key=lambda s: s[0])
        removed = small.channels[i] - len(local)
        small, keep[i], ratio = cand, keep[i][local], -neg_cost / dense_cost
        st = Step(rnd, i, removed, tuple(small.channels), ratio, acc)
        if finetune is not None:
            finetune(small)
            st.acc_tuned = evaluate(small)
        steps.append(st)
        bar.update(1)
        bar.set_postfix(ratio=f"{ratio:.3f}", acc=f"{acc:.3f}")
    bar.close()
    return results

def round_fine_tune(data, *, seed: int, **fit_kw) -> Callable:
    """The per-round fine-tune of a greedy search (greedy_prune's `finetune`): one epoch of
    train.fine_tune on `data`, with seed, seed + 1, ... in turn (a fresh shuffle and fresh
    crops each round); fit_kw: lr, batch_size, augment, ..."""
    seeds = itertools.count(seed)
    return lambda m: train.fine_tune(m, data, epochs=1, seed=next(seeds), desc="round fine-tune",
                                     **fit_kw)

def hybrid(result: GreedyResult, sparsity: float) -> VGG:
    """Greedy then magnitude: a copy of the greedy result's VGG, the remaining filters pruned
    by global magnitude to `sparsity` of its own counted weights (masks attached)."""
    small = copy.deepcopy(result.model)
    prune_global(small, sparsity)
    return small
