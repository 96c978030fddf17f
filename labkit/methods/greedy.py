"""Greedy layer-wise filter pruning of the VGG (a simplified ThiNet).

Each round tries, for every conv layer in turn, removing ``step`` x its
current channels (at least one) -- the filters of lowest L2 norm -- and
evaluates each candidate on a fixed validation batch set. It commits the
candidate that lost least accuracy (ties: the one that saves more cost, then
the lower layer), fine-tunes briefly (``finetune`` callback) and repeats
until the model's params (or MACs) fall to each target fraction of the dense
model's.

Every step is a physically smaller VGG (``channels.shrink_vgg``); ``keep``
maps it back to the original's channels, so ``expand()`` writes its weights
into an equivalent masked VGG of the original shape (``channels.expand_vgg``).
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm  # widgets in Jupyter, text elsewhere

from .. import config
from ..models import VGG
from ..prune.channels import expand_vgg, l2_ranking, shrink_vgg
from ..prune.magnitude import prune_global

COSTS = ("params", "macs")


def vgg_macs(model: VGG, input_shape: tuple = (3, 32, 32)) -> int:
    """Multiply-accumulates of one (C, H, W) image through the VGG's convs and
    classifier (what metrics.macs counts), computed from the shapes."""
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
    if by not in COSTS:
        raise ValueError(f"by={by!r} is not one of {COSTS}")
    if by == "params":
        return sum(p.numel() for p in model.parameters())
    return vgg_macs(model, input_shape)


@dataclass
class Step:
    """One committed removal: round, conv index, channels removed, the channels
    after it, cost ratio to the dense model, and validation-batch accuracy
    after the removal (acc) and after the brief fine-tune (acc_tuned)."""

    round: int
    layer: int
    removed: int
    channels: tuple
    ratio: float
    acc: float
    acc_tuned: float | None = None


@dataclass
class GreedyResult:
    """A physically smaller VGG reached by greedy pruning.

    model: the small VGG; keep: {conv index: kept original channel indices};
    channels: the original channels; by / target / ratio: the cost measure,
    the target fraction and the fraction reached; steps: the path so far.
    """

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
    if by not in COSTS:
        raise ValueError(f"by={by!r} is not one of {COSTS}")
    if isinstance(targets, (int, float)):
        targets = [targets]
    targets = list(targets)
    if not targets:
        raise ValueError("targets is empty; give fractions of the dense cost in (0, 1]")
    for t in targets:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            raise ValueError(f"target={t!r} must be a fraction of the dense {by} in (0, 1]")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step < 1:
        raise ValueError(f"step={step!r} must be a fraction in (0, 1) of a layer's channels")
    if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(f"min_channels={min_channels!r} must be a positive integer")
    return sorted(float(t) for t in targets)[::-1]


def candidates(model: VGG, step: float, min_channels: int = 1) -> dict[int, torch.Tensor]:
    """{conv index: kept local channel indices} removing round(step * C_i) (at
    least 1) lowest-filter-norm channels of that conv; convs that would drop
    below `min_channels` are left out."""
    out = {}
    for i, c in enumerate(model.channels):
        k = max(1, int(round(step * c)))
        if c - k < min_channels:
            continue
        out[i] = l2_ranking(model, i, by="filter")[:c - k].sort().values
    return out


def greedy_prune(model: VGG, evaluate: Callable, targets, *, by: str = "params", step: float = 0.2,
                 finetune: Callable | None = None, min_channels: int = 1,
                 input_shape: tuple = (3, 32, 32), progress: bool = True) -> list[GreedyResult]:
    """Greedy filter pruning of a copy of `model` down to each of `targets`.

    evaluate: model -> accuracy on a fixed validation batch set (see train.evaluator);
    targets: fractions of the dense cost (by='params' or 'macs') in (0, 1];
    finetune: model -> None, called in place after each committed step (None: no fine-tune).
    Returns one GreedyResult per target, largest target first: a copy of the
    model the first time its cost ratio fell to <= that target.
    """
    targets = _check(model, targets, by, step, min_channels)
    small = copy.deepcopy(model)
    keep = {i: torch.arange(c) for i, c in enumerate(model.channels)}
    dense_cost = cost(model, by, input_shape)
    ratio, steps, results, rnd = 1.0, [], [], 0
    pending = list(targets)
    bar = tqdm(desc=f"greedy ({by})", disable=not (progress and config.progress()), file=sys.stdout,
               mininterval=2)
    while True:
        while pending and ratio <= pending[0]:
            results.append(GreedyResult(copy.deepcopy(small),
                                        {i: k.clone() for i, k in keep.items()},
                                        tuple(model.channels), by, pending.pop(0), ratio,
                                        list(steps)))
        if not pending:
            break
        options = candidates(small, step, min_channels)
        if not options:
            raise ValueError(f"target={pending[0]} of the dense {by} is unreachable with "
                             f"min_channels={min_channels}: every conv is at its minimum "
                             f"at {ratio:.3f}")
        rnd += 1
        best = None
        for i, local in options.items():
            cand = shrink_vgg(small, {i: local})
            score = (evaluate(cand), -cost(cand, by, input_shape), -i)
            if best is None or score > best[0]:
                best = (score, i, local, cand)
        (acc, neg_cost, _), i, local, cand = best
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


def hybrid(result: GreedyResult, sparsity: float, layers=None) -> VGG:
    """Greedy then magnitude: a copy of the greedy result's small VGG with
    global magnitude pruning (masks attached, absolute `sparsity` of its own
    counted weights, see magnitude.prune_global) of the filters that remain."""
    small = copy.deepcopy(result.model)
    prune_global(small, sparsity, layers=layers)
    return small
