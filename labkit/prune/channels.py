"""Channel removal in the VGG, as a smaller model and as its masked twin; a plan is {conv index:
kept channels (k,)}. The twin masks filter j of conv i and zeroes bn i's weight and bias at j (a
zero filter alone still outputs BN's bias), so both compute the same in eval mode."""
import copy

import torch
from torch import nn

from ..config import check_choice, check_fraction
from ..models import VGG
from .masks import current_mask, put, set_mask, take

BN = ("weight", "bias", "running_mean", "running_var")

def convs(model: VGG) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """[(conv_i, bn_i)] in order."""
    if not isinstance(model, VGG):
        raise TypeError(f"channel pruning here needs a labkit VGG, got {type(model).__name__}")
    return [(getattr(model.backbone, f"conv{i}"), getattr(model.backbone, f"bn{i}"))
            for i in range(len(model.channels))]

def _conv_index(model: VGG, name) -> int:
    """Conv index of `name` ('backbone.conv3', 'conv3' or 3); a clear error for anything else."""
    n = len(model.channels)
    if isinstance(name, int) and not isinstance(name, bool) and 0 <= name < n:
        return name
    short = name.removeprefix("backbone.") if isinstance(name, str) else ""
    if short.startswith("conv") and short[4:].isdigit() and int(short[4:]) < n:
        return int(short[4:])
    raise ValueError(f"unknown conv layer {name!r}; the VGG's prunable convs are "
                     f"{[f'backbone.conv{i}' for i in range(n)]} (or their indices 0..{n - 1})")

def check_keep(model: VGG, keep: dict) -> dict[int, torch.Tensor]:
    """A checked plan {conv index (keys as :func:`_conv_index`): sorted unique channels (k,)}."""
    convs(model)  # a TypeError for anything but a labkit VGG
    if not isinstance(keep, dict):
        raise TypeError(f"keep must be a dict {{conv index: kept channel indices}}, "
                        f"got {type(keep).__name__}")
    out = {}
    for i, idx in keep.items():
        i = _conv_index(model, i)
        idx = torch.as_tensor(idx, dtype=torch.long).flatten().cpu()
        c = model.channels[i]
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= c or len(idx.unique()) != len(idx):
            raise ValueError(f"kept channels of conv{i} must be 1..{c} unique indices in "
                             f"[0, {c}); got {idx.tolist()[:8]}...")
        out[i] = idx.sort().values
    return out

def _full(model: VGG, keep: dict) -> list[torch.Tensor]:
    """The checked plan for every conv (all channels where `keep` has none), on model's device."""
    keep, dev = check_keep(model, keep), next(model.parameters()).device
    return [keep.get(i, torch.arange(c)).to(dev) for i, c in enumerate(model.channels)]

@torch.no_grad()
def shrink_vgg(model: VGG, keep: dict) -> VGG:
    """The physically smaller VGG equal to mask_channels(model, keep), with the masks sliced."""
    full = _full(model, keep)
    small = VGG(channels=tuple(len(k) for k in full), num_classes=model.classifier.out_features)
    small = small.to(next(model.parameters()).device).train(model.training)
    for (c, bn), (sc, sbn), rows, cols in zip(convs(model), convs(small), full, [None, *full]):
        take(c, sc, rows, cols)
        for name in BN:
            getattr(sbn, name).copy_(getattr(bn, name)[rows])
        sbn.num_batches_tracked.copy_(bn.num_batches_tracked)
    take(model.classifier, small.classifier, None, full[-1])
    small.classifier.bias.copy_(model.classifier.bias)
    return small

@torch.no_grad()
def mask_channels(model: VGG, keep: dict) -> VGG:
    """In place: mask the removed channels' filters (on any mask), zero their BN weight and bias."""
    keep, pairs = check_keep(model, keep), convs(model)
    for i in sorted(keep):
        c, bn = pairs[i]
        alive = torch.zeros(c.out_channels, dtype=torch.bool, device=c.weight.device)
        alive[keep[i].to(c.weight.device)] = True
        set_mask(c, alive.view(-1, 1, 1, 1).expand_as(c.weight) & current_mask(c))
        bn.weight.mul_(alive)
        bn.bias.mul_(alive)
    return model

@torch.no_grad()
def expand_vgg(small: VGG, keep: dict, channels: tuple) -> VGG:
    """The masked VGG of `channels` equal to `small`: small's weights and masks at kept places."""
    big = VGG(channels=tuple(channels), num_classes=small.classifier.out_features)
    big = big.to(next(small.parameters()).device).train(small.training)
    full = _full(big, keep)
    dev = full[0].device
    first = torch.arange(big.backbone.conv0.in_channels, device=dev)
    for (c, bn), (sc, sbn), rows, cols in zip(convs(big), convs(small), full, [first, *full]):
        put(sc, c, rows, cols)
        for name in BN:
            stat = getattr(bn, name).fill_(1.0 if name == "running_var" else 0.0)
            stat[rows] = getattr(sbn, name)
    every_row = torch.arange(big.classifier.out_features, device=dev)
    put(small.classifier, big.classifier, every_row, full[-1])
    big.classifier.bias.copy_(small.classifier.bias)
    return mask_channels(big, keep)

def l2_ranking(model: VGG, i: int, by: str = "next") -> torch.Tensor:
    """Channels of conv i, most important first (C_i,): by the L2 norm of the next layer's
    input-channel weights (by='next', lab 02's criterion) or of conv i's filters (by='filter')."""
    pairs = convs(model)
    check_choice("by", by, ("next", "filter"))
    if by == "filter":
        w = pairs[i][0].weight.detach()
    else:
        w = pairs[i + 1][0].weight if i + 1 < len(pairs) else model.classifier.weight
        w = w.detach().transpose(0, 1)
    return torch.argsort(w.reshape(w.shape[0], -1).norm(dim=1), descending=True, stable=True)

def uniform_keep(model: VGG, ratio) -> dict[int, torch.Tensor]:
    """The naive plan: the FIRST round(c * (1 - r)) channels of each conv, removing a fraction
    r = `ratio` of every conv but the last, or {conv name or index: r}. {conv index: (k,)}."""
    convs(model)  # a TypeError for anything but a labkit VGG
    if isinstance(ratio, dict):
        ratios = {_conv_index(model, k): check_fraction(f"ratio of {k!r}", v)
                  for k, v in ratio.items()}
    else:
        ratios = dict.fromkeys(range(len(model.channels) - 1), check_fraction("ratio", ratio))
    keep = {}
    for i, r in ratios.items():
        c = model.channels[i]
        keep[i] = torch.arange(int(round(c * (1 - r))))
        if len(keep[i]) < 1:
            raise ValueError(f"ratio {r} would remove all {c} channels of backbone.conv{i} "
                             f"(round({c} x {1 - r:.3f}) = 0); use a smaller ratio")
    return keep

def _permute(module: nn.Module, perm: torch.Tensor, dim: int) -> None:
    """Reorder module's weight (and mask) along `dim` by `perm` (C,)."""
    module.weight.copy_(module.weight.index_select(dim, perm))
    if hasattr(module, "weight_mask"):
        module.weight_mask = module.weight_mask.index_select(dim, perm)

@torch.no_grad()
def sort_channels(model: VGG) -> VGG:
    """An equal copy with each conv's channels (but the last conv's) in :func:`l2_ranking` order."""
    out = copy.deepcopy(model)
    pairs = convs(out)
    for i in range(len(pairs) - 1):
        perm = l2_ranking(out, i, by="next").to(out.classifier.weight.device)
        _permute(pairs[i][0], perm, 0)
        _permute(pairs[i + 1][0], perm, 1)
        for name in BN:
            getattr(pairs[i][1], name).copy_(getattr(pairs[i][1], name)[perm])
    return out

def channel_prune(model: VGG, ratio, sort: bool = False) -> VGG:
    """A smaller VGG keeping :func:`uniform_keep`'s first or, sorted, most important channels."""
    src = sort_channels(model) if sort else model
    return shrink_vgg(src, uniform_keep(src, ratio))
