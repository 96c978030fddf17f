"""Sparse Structure Selection (Huang & Wang 2017) on the VGG's channels.

The scaling factor of conv i's output channel j is the weight (gamma) of
BatchNorm i: ``relu(gamma_j * xhat_j + beta_j)``. The loss adds
``lam * sum |gamma|``; a custom loop trains everything with SGD and then
applies the proximal step of that L1 term to the factors,
soft-thresholding ``gamma <- sign(gamma) * max(|gamma| - lr * lam, 0)`` (as
the paper's APG does). Soft-thresholding makes factors exactly zero, not
merely small. (An explicit gate multiplying the whole BN output would do
nothing here: the next BatchNorm undoes any common scale of a layer's gates,
so L1 would shrink them all together. Against beta, gamma's scale matters.)

A channel whose factor is zero outputs the constant relu(beta_j). Channels
whose |factor| is <= ``threshold`` are removed with ``channels.shrink_vgg``;
the small model equals ``channels.mask_channels`` of the trained model
(which also zeroes beta_j, dropping that constant), and is then fine-tuned.
BatchNorm statistics are re-estimated after sparse training
(:func:`recalibrate_bn`), since the factors changed what each layer sees.
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm  # widgets in Jupyter, text elsewhere

from .. import config
from ..data import Data
from ..models import VGG
from .channels import convs, expand_vgg, shrink_vgg


def soft_threshold(x: torch.Tensor, t: float, nonneg: bool = False) -> torch.Tensor:
    """Proximal operator of t * |x| (plus the constraint x >= 0 when nonneg):
    sign(x) * max(|x| - t, 0), or max(x - t, 0). Same shape as x."""
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0:
        raise ValueError(f"threshold t={t!r} must be a non-negative number")
    if nonneg:
        return (x - t).clamp_min(0)
    return torch.sign(x) * (x.abs() - t).clamp_min(0)


def _check_positive(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name}={value!r} must be a {'non-negative' if allow_zero else 'positive'} number")
    return float(value)


def factors(model: VGG) -> list[torch.Tensor]:
    """The channel factors (BatchNorm weights), detached: [(C_i,)]."""
    return [bn.weight.detach().clone() for _, bn in convs(model)]


def sparse_train(model: VGG, data: Data, *, lam: float, epochs: int, lr: float, batch_size: int,
                 gate_lr: float | None = None, momentum: float = 0.9, weight_decay: float = 5e-4,
                 augment: bool = True, seed: int = 0, progress: bool = True) -> list[torch.Tensor]:
    """The SSS training loop, in place on `model`: loss = cross-entropy +
    lam * sum |gamma| over the BatchNorm weights. Each step: SGD (momentum;
    weight decay on conv/linear weights) on everything, the factors with
    learning rate gate_lr (default lr) and no momentum, then the proximal
    step soft_threshold(gamma, gate_lr * lam). Cosine learning-rate decay.
    Returns the factors [(C_i,)]."""
    lam = _check_positive("lam", lam, allow_zero=True)
    lr = _check_positive("lr", lr)
    gate_lr = lr if gate_lr is None else _check_positive("gate_lr", gate_lr)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be a positive integer")
    if not isinstance(model, VGG):
        raise TypeError(f"SSS here needs a labkit VGG, got {type(model).__name__}")
    gammas = [bn.weight for _, bn in convs(model)]
    ids = {id(g) for g in gammas}
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1 and id(p) not in ids]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=lr, momentum=momentum)
    gate_opt = torch.optim.SGD(gammas, lr=gate_lr, momentum=0.0)
    loader = data.loader("train", batch_size, shuffle=True, augment=augment, drop_last=True, seed=seed)
    total = epochs * len(loader)
    bar = tqdm(total=total, desc=f"SSS lam={lam:g}", disable=not (progress and config.progress()),
               file=sys.stdout, mininterval=2)
    step = 0
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            scale = 0.5 * (1 + math.cos(math.pi * step / total))
            for g in opt.param_groups:
                g["lr"] = lr * scale
            gate_opt.param_groups[0]["lr"] = gate_lr * scale
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise RuntimeError(f"SSS loss became {loss.item()} at step {step + 1}: lower lr or lam")
            opt.zero_grad(set_to_none=True)
            gate_opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            gate_opt.step()
            with torch.no_grad():
                for g in gammas:
                    g.copy_(soft_threshold(g, gate_lr * scale * lam, nonneg=False))
            step += 1
            bar.update(1)
    bar.close()
    return factors(model)


def lam_for_shrink(model: VGG, shrink: float, *, steps: int, gate_lr: float) -> float:
    """The lam whose soft-thresholding, summed over `steps` cosine-decayed
    steps of learning rate `gate_lr`, would move a factor by `shrink` times
    the model's median |factor| (before the data loss pushes back). A way
    to pick a sweep of lam that means the same at any training length."""
    shrink = _check_positive("shrink", shrink)
    gate_lr = _check_positive("gate_lr", gate_lr)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    median = float(torch.cat([f.abs() for f in factors(model)]).median())
    decay = sum(0.5 * (1 + math.cos(math.pi * t / steps)) for t in range(steps))
    return shrink * median / (gate_lr * decay)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Data, batches: int = 20, batch_size: int = 256) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance as the plain
    average over `batches` training batches (no augmentation, no weight
    change). Returns the model, in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for i, (x, _) in enumerate(data.loader("train", batch_size, shuffle=True, seed=12345)):
        if i >= batches:
            break
        model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return model.eval()


def plan(factors: list, threshold: float = 0.0, min_channels: int = 1) -> dict[int, torch.Tensor]:
    """{conv index: kept channels}: those whose factor is > threshold (at least
    `min_channels` per conv: the largest factors). factors: [(C_i,)], e.g. |gamma|."""
    threshold = _check_positive("threshold", threshold, allow_zero=True)
    if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(f"min_channels={min_channels!r} must be a positive integer")
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
    """One SSS point. model: the physically smaller VGG (before fine-tuning);
    trained: the sparse-trained VGG of the original shape (unmasked);
    keep: {conv index: kept channels}; factors: the BN weights [(C_i,)];
    lam, threshold: the settings."""

    model: VGG
    trained: VGG
    keep: dict
    factors: list
    lam: float
    threshold: float

    @property
    def channels(self) -> tuple:
        return tuple(self.trained.channels)

    def zeros(self) -> int:
        """How many factors are exactly zero."""
        return sum(int((g == 0).sum()) for g in self.factors)

    def expand(self) -> VGG:
        """The equivalent masked VGG of the original shape."""
        return expand_vgg(self.model, self.keep, self.channels)


def sss_prune(model: VGG, data: Data, *, lam: float, threshold: float = 0.0, min_channels: int = 1,
              recalibrate: int = 10, **train_kw) -> SSSResult:
    """Sparse-train a copy of `model` (sparse_train with `lam`), re-estimate its
    BatchNorm statistics (`recalibrate` batches; 0: keep), and remove the
    channels whose |factor| is <= threshold. The input model is not changed."""
    trained = copy.deepcopy(model)
    found = sparse_train(trained, data, lam=lam, **train_kw)
    if recalibrate:
        recalibrate_bn(trained, data, recalibrate)
    keep = plan([f.abs() for f in found], threshold, min_channels)
    return SSSResult(shrink_vgg(trained, keep), trained, keep, found, lam, threshold)
