"""Channel (filter) removal in the VGG: as a mask and as a physically smaller model.

The shared primitive of channel pruning (lab 02), greedy filter pruning and
Sparse Structure Selection (lab 04). A plan is ``keep = {conv index: kept
output-channel indices}`` for the VGG's convs ``backbone.conv0..convN``.

Removing output channel j of conv i removes: filter j of conv i, entry j of
bn i (weight, bias, running stats), and input channel j of the next conv (or
column j of the classifier after the last conv).

The *masked* equivalent zeroes filter j AND bn i's weight and bias at j, so
the channel's activation after BN + ReLU is exactly 0 (a zero filter alone
would still output BN's bias). In eval mode the two models compute the same.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..models import VGG
from .masks import copy_mask, set_mask


def _check_vgg(model) -> None:
    if not isinstance(model, VGG):
        raise TypeError(f"channel pruning here needs a labkit VGG, got {type(model).__name__}")


def convs(model: VGG) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """[(conv_i, bn_i)] in order."""
    _check_vgg(model)
    return [(getattr(model.backbone, f"conv{i}"), getattr(model.backbone, f"bn{i}"))
            for i in range(len(model.channels))]


def _next_weight(model: VGG, i: int) -> torch.Tensor:
    """The weight whose dim 1 reads conv i's channels: conv i+1's, or the classifier's."""
    n = len(model.channels)
    return getattr(model.backbone, f"conv{i + 1}").weight if i + 1 < n else model.classifier.weight


def check_keep(model: VGG, keep: dict) -> dict[int, torch.Tensor]:
    """Validate a plan: int conv indices in range, 1-D unique sorted indices within the
    channels."""
    _check_vgg(model)
    if not isinstance(keep, dict):
        raise TypeError(f"keep must be a dict {{conv index: kept channel indices}}, "
                        f"got {type(keep).__name__}")
    out = {}
    for i, idx in keep.items():
        if not isinstance(i, int) or not 0 <= i < len(model.channels):
            raise ValueError(f"conv index {i!r} is not in 0..{len(model.channels) - 1}")
        idx = torch.as_tensor(idx, dtype=torch.long).flatten().cpu()
        c = model.channels[i]
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= c or len(idx.unique()) != len(idx):
            raise ValueError(f"kept channels of conv{i} must be 1..{c} unique indices in "
                             f"[0, {c}); got {idx.tolist()[:8]}...")
        out[i] = idx.sort().values
    return out


@torch.no_grad()
def shrink_vgg(model: VGG, keep: dict) -> VGG:
    """A physically smaller VGG keeping only `keep[i]` output channels of conv i
    (convs not in `keep` keep all). Its outputs equal mask_channels(model, keep)'s.
    Masked convs (and classifier) pass the kept rows and columns of their
    masks on, so zeros inside the kept channels stay held through fine-tuning."""
    keep = check_keep(model, keep)
    full = {i: keep.get(i, torch.arange(c)) for i, c in enumerate(model.channels)}
    device = next(model.parameters()).device
    small = VGG(channels=tuple(len(full[i]) for i in range(len(full))),
                num_classes=model.classifier.out_features).to(device)
    small.train(model.training)
    for i, ((c, bn), (sc, sbn)) in enumerate(zip(convs(model), convs(small))):
        rows = full[i].to(device)
        cols = full[i - 1].to(device) if i > 0 else None
        sc.weight.copy_(c.weight[rows] if cols is None else c.weight[rows][:, cols])
        copy_mask(c, sc, rows, cols)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(sbn, name).copy_(getattr(bn, name)[rows])
        sbn.num_batches_tracked.copy_(bn.num_batches_tracked)
    small.classifier.weight.copy_(model.classifier.weight[:, full[len(full) - 1].to(device)])
    small.classifier.bias.copy_(model.classifier.bias)
    copy_mask(model.classifier, small.classifier, None, full[len(full) - 1])
    return small


@torch.no_grad()
def mask_channels(model: VGG, keep: dict) -> VGG:
    """In place: zero the removed channels' filters (via weight_mask) and their
    BN weight and bias, so each removed channel outputs exactly 0. Returns model."""
    keep = check_keep(model, keep)
    for i, (c, bn) in enumerate(convs(model)):
        if i not in keep:
            continue
        alive = torch.zeros(c.out_channels, dtype=torch.bool, device=c.weight.device)
        alive[keep[i].to(c.weight.device)] = True
        mask = alive.view(-1, 1, 1, 1).expand_as(c.weight).clone()
        if hasattr(c, "weight_mask"):
            mask &= c.weight_mask
        set_mask(c, mask)
        bn.weight.mul_(alive)
        bn.bias.mul_(alive)
    return model


@torch.no_grad()
def _place_mask(small: nn.Module, big: nn.Module, rows: torch.Tensor, cols: torch.Tensor) -> None:
    """When `small` has a mask (k, j, ...): give `big` the mask that is small's at
    weight rows `rows` (k,) x columns `cols` (j,) and False elsewhere."""
    if not hasattr(small, "weight_mask"):
        return
    mask = torch.zeros_like(big.weight, dtype=torch.bool)
    mask[rows[:, None], cols[None, :]] = small.weight_mask
    set_mask(big, mask)


@torch.no_grad()
def expand_vgg(small: VGG, keep: dict, channels: tuple) -> VGG:
    """The masked VGG of the original `channels` equivalent to `small`, with
    small's weights written back at the kept positions. Where a layer of
    `small` has a mask, the big layer's mask is that mask at the kept
    positions and False elsewhere (masks only grow across the round trip)."""
    big = VGG(channels=tuple(channels), num_classes=small.classifier.out_features)
    big = big.to(next(small.parameters()).device)
    big.train(small.training)
    keep = check_keep(big, keep)
    full = {i: keep.get(i, torch.arange(c)) for i, c in enumerate(big.channels)}
    dev = next(big.parameters()).device
    for i, ((c, bn), (sc, sbn)) in enumerate(zip(convs(big), convs(small))):
        rows = full[i].to(dev)
        cols = full[i - 1].to(dev) if i > 0 else torch.arange(c.in_channels, device=dev)
        c.weight.zero_()
        c.weight[rows[:, None], cols[None, :]] = sc.weight
        _place_mask(sc, c, rows, cols)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name).zero_()
            getattr(bn, name)[rows] = getattr(sbn, name)
        bn.running_var[~torch.isin(torch.arange(c.out_channels, device=dev), rows)] = 1.0
    big.classifier.weight.zero_()
    last = full[len(full) - 1].to(dev)
    big.classifier.weight[:, last] = small.classifier.weight
    every_row = torch.arange(big.classifier.out_features, device=dev)
    _place_mask(small.classifier, big.classifier, every_row, last)
    big.classifier.bias.copy_(small.classifier.bias)
    return mask_channels(big, {i: k for i, k in keep.items()})


def l2_ranking(model: VGG, i: int, by: str = "next") -> torch.Tensor:
    """Channels of conv i, most important first. by='next': L2 norm of the next
    layer's input-channel weights (lab 02's criterion); by='filter': L2 norm of
    conv i's own filters. Returns indices (C_i,)."""
    _check_vgg(model)
    if by == "next":
        w = _next_weight(model, i)
        norms = w.detach().transpose(0, 1).reshape(w.shape[1], -1).norm(dim=1)
    elif by == "filter":
        w = convs(model)[i][0].weight.detach()
        norms = w.reshape(w.shape[0], -1).norm(dim=1)
    else:
        raise ValueError(f"by={by!r} is not one of ('next', 'filter')")
    return torch.argsort(norms, descending=True, stable=True)


# ---------------------------------------------------------------- uniform channel pruning (lab 02)

def _conv_index(model: VGG, name) -> int:
    """Conv index of `name` ('backbone.conv3', 'conv3' or 3); a clear error for anything else."""
    n = len(model.channels)
    if isinstance(name, int) and not isinstance(name, bool) and 0 <= name < n:
        return name
    if isinstance(name, str):
        short = name[len("backbone."):] if name.startswith("backbone.") else name
        if short.startswith("conv") and short[4:].isdigit() and int(short[4:]) < n:
            return int(short[4:])
    raise ValueError(f"unknown conv layer {name!r}; the VGG's prunable convs are "
                     f"{[f'backbone.conv{i}' for i in range(n)]} (or their indices 0..{n - 1})")


def _check_ratio(name: str, ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TypeError(f"{name}={ratio!r} must be a number in [0, 1)")
    ratio = float(ratio)
    if not 0 <= ratio < 1:  # also rejects NaN
        raise ValueError(f"{name}={ratio!r} is outside the allowed range [0, 1): it is the "
                         "fraction of output channels removed")
    return ratio


def uniform_ratios(model: VGG, ratio) -> dict[int, float]:
    """{conv index: fraction of output channels to remove}.

    ratio: one number in [0, 1) for every conv but the last (the lab's plan),
    or {conv name or index: ratio} for chosen convs (the last one allowed).
    """
    _check_vgg(model)
    if isinstance(ratio, dict):
        return {_conv_index(model, k): _check_ratio(f"ratio of {k!r}", v) for k, v in ratio.items()}
    r = _check_ratio("ratio", ratio)
    return {i: r for i in range(len(model.channels) - 1)}


def uniform_keep(model: VGG, ratio) -> dict[int, torch.Tensor]:
    """The naive plan: keep the FIRST round(c * (1 - ratio)) output channels of
    each conv named by :func:`uniform_ratios`. Returns {conv index: indices (k,)}."""
    keep = {}
    for i, r in uniform_ratios(model, ratio).items():
        c = model.channels[i]
        k = int(round(c * (1 - r)))
        if k < 1:
            raise ValueError(f"ratio {r} would remove all {c} channels of backbone.conv{i} "
                             f"(round({c} x {1 - r:.3f}) = 0); use a smaller ratio")
        keep[i] = torch.arange(k)
    return keep


@torch.no_grad()
def sort_channels(model: VGG, convs_to_sort=None) -> VGG:
    """An equivalent copy of `model` whose convs' output channels are reordered,
    most important first (importance: L2 norm of the next layer's input-channel
    weights, :func:`l2_ranking`). Filters, BN entries (and masks) move with their
    channel, and the next layer's input channels are permuted to match, so the
    outputs are unchanged. Default: every conv but the last (the lab's choice)."""
    _check_vgg(model)
    n = len(model.channels)
    order = (range(n - 1) if convs_to_sort is None
             else sorted({_conv_index(model, i) for i in convs_to_sort}))
    out = copy.deepcopy(model)
    pairs = convs(out)
    for i in order:
        perm = l2_ranking(out, i, by="next").to(out.classifier.weight.device)
        c, bn = pairs[i]
        c.weight.copy_(c.weight[perm])
        if hasattr(c, "weight_mask"):
            c.weight_mask = c.weight_mask[perm].clone()
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name).copy_(getattr(bn, name)[perm])
        nxt = pairs[i + 1][0] if i + 1 < n else out.classifier
        nxt.weight.copy_(nxt.weight[:, perm])
        if hasattr(nxt, "weight_mask"):
            nxt.weight_mask = nxt.weight_mask[:, perm].clone()
    return out


def channel_prune(model: VGG, ratio, sort: bool = False) -> VGG:
    """Uniform channel pruning as a physically smaller VGG (the original is not
    touched): keep round(c * (1 - ratio)) output channels of every conv but the
    last, the first k (sort=False, naive) or the k most important (sort=True,
    i.e. :func:`sort_channels` first). ratio 0 returns an equivalent copy."""
    src = sort_channels(model) if sort else model
    return shrink_vgg(src, uniform_keep(src, ratio))
