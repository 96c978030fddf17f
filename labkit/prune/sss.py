"""Sparse Structure Selection (Huang & Wang 2017) on the VGG's channels.

Each conv's output channel j gets a scaling factor g_j >= 0 applied after
its BatchNorm, before the ReLU: ``relu(g * bn(conv(x)))``. The loss adds
``lam * sum |g|``; a custom loop trains the weights with SGD and the factors
with a proximal-gradient step: a gradient step on the data loss, then
soft-thresholding ``g <- max(g - lr * lam, 0)`` (the proximal operator of
lam * |g| with g >= 0, as in the paper's APG). Soft-thresholding makes
factors exactly zero, not merely small.

Because g >= 0, ``relu(g * z) = g * relu(z)`` and the factors fold exactly
into the BatchNorm (weight and bias times g): a zero factor leaves the
channel's BN weight and bias at zero, i.e. the masked-channel state of
``channels.mask_channels``. Channels whose factor is <= ``threshold`` are
then removed physically with ``channels.shrink_vgg``.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .. import config
from ..data import Data
from ..models import VGG
from .channels import convs, expand_vgg, shrink_vgg


def soft_threshold(x: torch.Tensor, t: float, nonneg: bool = True) -> torch.Tensor:
    """Proximal operator of t * |x| (plus the constraint x >= 0 when nonneg):
    sign(x) * max(|x| - t, 0), or max(x - t, 0). Same shape as x."""
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0:
        raise ValueError(f"threshold t={t!r} must be a non-negative number")
    if nonneg:
        return (x - t).clamp_min(0)
    return torch.sign(x) * (x.abs() - t).clamp_min(0)


class ChannelGates(nn.Module):
    """A factor per output channel of each VGG conv, applied after bn_i by a
    forward hook. ``gates[i]``: (C_i,), initialised to 1 (the model unchanged).
    Call :meth:`fold` (or :meth:`remove`) to detach the hooks."""

    def __init__(self, model: VGG, init: float = 1.0):
        super().__init__()
        pairs = convs(model)
        self.model = [model]  # a list, so the model is not registered as a submodule
        self.gates = nn.ParameterList(
            [nn.Parameter(torch.full((bn.num_features,), float(init), device=bn.weight.device)) for _, bn in pairs])
        self._hooks = [bn.register_forward_hook(self._hook(i)) for i, (_, bn) in enumerate(pairs)]

    def _hook(self, i: int):
        def scale(module, inputs, out):  # out: (B, C_i, H, W)
            return out * self.gates[i].view(1, -1, 1, 1)
        return scale

    def values(self) -> list[torch.Tensor]:
        """The factors, detached: [(C_i,)]."""
        return [g.detach().clone() for g in self.gates]

    def remove(self) -> None:
        """Detach the hooks (the model computes without factors again)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    @torch.no_grad()
    def fold(self) -> VGG:
        """Multiply each BN's weight and bias by its factors, detach the hooks;
        returns the model, which now computes what the gated model computed."""
        if not self._hooks:
            raise RuntimeError("these gates were already folded or removed")
        for g, (_, bn) in zip(self.gates, convs(self.model[0])):
            if bool((g < 0).any()):
                raise ValueError(f"factors must be >= 0 to fold through the ReLU; min is {g.min().item()}")
            bn.weight.mul_(g)
            bn.bias.mul_(g)
        self.remove()
        return self.model[0]


def _check_positive(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name}={value!r} must be a {'non-negative' if allow_zero else 'positive'} number")
    return float(value)


def sparse_train(model: VGG, data: Data, *, lam: float, epochs: int, lr: float, batch_size: int,
                 gate_lr: float | None = None, momentum: float = 0.9, weight_decay: float = 5e-4,
                 augment: bool = True, seed: int = 0, progress: bool = True) -> ChannelGates:
    """The SSS training loop, in place on `model` with new ChannelGates:
    loss = cross-entropy + lam * sum |g|; weights by SGD (momentum, weight
    decay on conv/linear weights); factors by a gradient step on the
    cross-entropy (lr gate_lr, default lr) then soft_threshold(g, gate_lr * lam).
    Cosine learning-rate decay. Returns the (still hooked) gates."""
    lam = _check_positive("lam", lam, allow_zero=True)
    lr = _check_positive("lr", lr)
    gate_lr = lr if gate_lr is None else _check_positive("gate_lr", gate_lr)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be a positive integer")
    if not isinstance(model, VGG):
        raise TypeError(f"SSS here needs a labkit VGG, got {type(model).__name__}")
    gates = ChannelGates(model)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=lr, momentum=momentum)
    gate_opt = torch.optim.SGD(gates.parameters(), lr=gate_lr, momentum=0.0)
    loader = data.loader("train", batch_size, shuffle=True, augment=augment, drop_last=True, seed=seed)
    total = epochs * len(loader)
    bar = tqdm(total=total, desc=f"SSS lam={lam:g}", disable=not (progress and config.progress()),
               file=sys.stdout, mininterval=2)
    step = 0
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            scale = 0.5 * (1 + torch.cos(torch.tensor(torch.pi * step / total))).item()
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
                for g in gates.gates:
                    g.copy_(soft_threshold(g, gate_lr * scale * lam))
            step += 1
            bar.update(1)
    bar.close()
    return gates


def plan(factors: list, threshold: float = 0.0, min_channels: int = 1) -> dict[int, torch.Tensor]:
    """{conv index: kept channels}: those whose factor is > threshold (at least
    `min_channels` per conv: the largest factors). factors: [(C_i,)]."""
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
    trained: the sparse-trained VGG of the original shape with the factors
    folded in (unmasked); keep: {conv index: kept channels}; factors: [(C_i,)];
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
              **train_kw) -> SSSResult:
    """Sparse-train a copy of `model` (sparse_train with `lam`), fold the
    factors into the BatchNorms, and remove the channels whose factor is
    <= threshold. The input model is not changed."""
    trained = copy.deepcopy(model)
    gates = sparse_train(trained, data, lam=lam, **train_kw)
    factors = gates.values()
    gates.fold()
    keep = plan(factors, threshold, min_channels)
    return SSSResult(shrink_vgg(trained, keep), trained, keep, factors, lam, threshold)
