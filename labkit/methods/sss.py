"""Sparse Structure Selection (Huang & Wang 2017) on the VGG's channels: train.fit plus the
proximal step of lam * sum |gamma| (:class:`ProximalStep`), which soft-thresholds BatchNorm
weights to exact zeros; those channels are then removed (channels.shrink_vgg)."""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import torch
from torch import nn

from .. import train
from ..config import check_int, check_positive
from ..data import Data
from ..models import VGG
from ..prune.channels import convs, expand_vgg, shrink_vgg

SCHEDULE = dict(warmup=0.0, schedule="cosine")   # SSS's learning-rate schedule (train.lr_at)

def soft_threshold(x: torch.Tensor, t: float, nonneg: bool = False) -> torch.Tensor:
    """Proximal operator of t * |x|: sign(x) * max(|x| - t, 0) (nonneg: max(x - t, 0))."""
    t = check_positive("threshold t", t, allow_zero=True)
    return (x - t).clamp_min(0) if nonneg else torch.sign(x) * (x.abs() - t).clamp_min(0)

def factors(model: VGG) -> list[torch.Tensor]:
    """The channel factors (BatchNorm weights), detached: [(C_i,)]."""
    return [bn.weight.detach().clone() for _, bn in convs(model)]

class ProximalStep:
    """SSS's after-step hook for fit: gamma <- soft_threshold(gamma, lam * lr_g) on every
    BatchNorm weight, lr_g = lr_at(step, total, lr, **SCHEDULE) * lr_scale, as fit sets it."""

    def __init__(self, model: VGG, *, lam: float, lr: float, lr_scale: float, total: int):
        self.gammas = [bn.weight for _, bn in convs(model)]
        self.lam, self.lr, self.lr_scale, self.total = lam, lr, lr_scale, total

    @torch.no_grad()
    def __call__(self, model: nn.Module = None, step: int = 0) -> None:
        t = self.lam * (train.lr_at(step, self.total, self.lr, **SCHEDULE) * self.lr_scale)
        for g in self.gammas:
            g.copy_(soft_threshold(g, t, nonneg=False))

def sparse_train(model: VGG, data: Data, *, lam: float, epochs: int, lr: float, batch_size: int,
                 gate_lr: float | None = None, momentum: float = 0.9, weight_decay: float = 5e-4,
                 augment: bool = True, seed: int = 0, progress: bool = True) -> list[torch.Tensor]:
    """SSS training in place: cross-entropy + lam * sum |gamma|, as train.fit with SCHEDULE,
    plain momentum, the factors in their own group (lr gate_lr, default lr; no momentum or
    weight decay) and the :class:`ProximalStep` hook. Masks are kept. Returns the factors."""
    lam = check_positive("lam", lam, allow_zero=True)
    lr = check_positive("lr", lr)
    gate_lr = lr if gate_lr is None else check_positive("gate_lr", gate_lr)
    check_int("epochs", epochs, 1)
    if not isinstance(model, VGG):
        raise TypeError(f"SSS here needs a labkit VGG, got {type(model).__name__}")
    total = epochs * len(data.loader("train", batch_size, drop_last=True))
    prox = ProximalStep(model, lam=lam, lr=lr, lr_scale=gate_lr / lr, total=total)
    group = dict(params=prox.gammas, lr_scale=prox.lr_scale, momentum=0.0, weight_decay=0.0)
    train.fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
              weight_decay=weight_decay, nesterov=False, label_smoothing=0.0, augment=augment,
              seed=seed, progress=progress, desc=f"SSS lam={lam:g}", after_step=[prox],
              param_groups=[group], validate=False, **SCHEDULE)
    return factors(model)

def lam_for_shrink(model: VGG, shrink: float, *, steps: int, gate_lr: float) -> float:
    """The lam whose soft-thresholds over `steps` steps of SCHEDULE at factor learning rate
    `gate_lr` sum to `shrink` x the median |factor| (the same meaning at any length)."""
    shrink = check_positive("shrink", shrink)
    gate_lr = check_positive("gate_lr", gate_lr)
    check_int("steps", steps, 1)
    median = float(torch.cat([f.abs() for f in factors(model)]).median())
    decay = sum(train.lr_at(t, steps, 1.0, **SCHEDULE) for t in range(steps))
    return shrink * median / (gate_lr * decay)

@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Data, batches: int = 20,
                   batch_size: int = 256) -> nn.Module:
    """Every BatchNorm's running statistics re-estimated as the plain average over `batches`
    training batches (no augmentation). Returns the model, in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    loader = data.loader("train", batch_size, shuffle=True, seed=12345)
    for x, _ in itertools.islice(loader, batches):
        model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return model.eval()

def plan(factors: list, threshold: float = 0.0, min_channels: int = 1) -> dict[int, torch.Tensor]:
    """{conv: kept channels}: factor > threshold, at least `min_channels` (the largest) per
    conv. factors: [(C_i,)], e.g. |gamma|."""
    threshold = check_positive("threshold", threshold, allow_zero=True)
    check_int("min_channels", min_channels, 1)
    keep = {}
    for i, g in enumerate(factors):
        g = g.detach().flatten().cpu()
        alive = torch.nonzero(g > threshold).flatten()
        if len(alive) < min_channels:
            alive = torch.argsort(g, descending=True, stable=True)[:min(min_channels, len(g))]
        keep[i] = alive.sort().values
    return keep

@dataclass
class SSSResult:
    """One SSS point: model (the smaller VGG), trained (the sparse-trained VGG of the
    original shape), keep ({conv: kept channels}), factors [(C_i,)], lam, threshold."""
    model: VGG
    trained: VGG
    keep: dict
    factors: list
    lam: float
    threshold: float

    def zeros(self) -> int:
        """How many factors are exactly zero."""
        return sum(int((g == 0).sum()) for g in self.factors)

    def expand(self) -> VGG:
        """The equivalent masked VGG of the original shape."""
        return expand_vgg(self.model, self.keep, tuple(self.trained.channels))

def sss_prune(model: VGG, data: Data, *, lam: float, threshold: float = 0.0, min_channels: int = 1,
              recalibrate: int = 10, **train_kw) -> SSSResult:
    """Sparse-train a copy of `model` (sparse_train), re-estimate its BatchNorm statistics
    (`recalibrate` batches; 0: keep), remove the channels with |factor| <= threshold."""
    trained = copy.deepcopy(model)
    found = sparse_train(trained, data, lam=lam, **train_kw)
    if recalibrate:
        recalibrate_bn(trained, data, recalibrate)
    keep = plan([f.abs() for f in found], threshold, min_channels)
    return SSSResult(shrink_vgg(trained, keep), trained, keep, found, lam, threshold)
