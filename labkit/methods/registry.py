"""The one method interface, ``prune_to(name, model, target, ctx) -> (model, info)`` (the
contract: labkit.methods). METHODS maps a name to (adapter fn(dense, c, ctx), model classes)."""
from __future__ import annotations

import copy
import dataclasses
import itertools
from math import inf
from typing import Callable

import torch
from torch import nn

from .. import sensitivity, train
from ..config import check_fraction, check_int
from ..models import MLP, VGG
from ..prune import channels, magnitude, nm, units
from ..prune.masks import count_weights
from . import greedy, schedules, sss


class Unreachable(ValueError):
    """A method cannot produce the asked-for target (e.g. hybrid at or below its greedy start)."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """The fine-tuning every pruned model gets: `epochs` over a fixed subset of `images`
    training images (None: all), SGD at `lr`, `batch_size`, crop + flip when `augment`."""

    epochs: int
    lr: float
    batch_size: int
    images: int | None = None
    augment: bool = False
    label_smoothing: float = 0.0

    def __post_init__(self):
        check_int("budget epochs", self.epochs, 0)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"budget lr={self.lr!r} must be a positive number")
        if self.images is not None:
            check_int("budget images", self.images, 1, what="or None: every image")
        check_fraction("budget label_smoothing", self.label_smoothing)

    def label(self) -> str:
        """A short string that identifies the budget in result rows."""
        imgs = "all" if self.images is None else f"{self.images}"
        ls = f", ls {self.label_smoothing:g}" if self.label_smoothing else ""
        return (f"{self.epochs}ep x {imgs} img, lr {self.lr:g}, bs {self.batch_size}, "
                f"aug {int(self.augment)}{ls}")


@dataclasses.dataclass
class Context:
    """What a method may need: the data, the budget (tune_data: its training subset), the
    seed, the settings (`knobs`, see compare.run), every target of the run (greedy
    searches once for all) and `memo`, the work shared by the targets of one dense model."""

    data: object
    budget: Budget
    seed: int = 0
    knobs: dict = dataclasses.field(default_factory=dict)
    targets: tuple = ()
    progress: bool = False
    memo: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        n = self.budget.images
        self.tune_data = self.data.subset(n if n and n < len(self.data.train) else None,
                                          seed=self.seed)

    def once(self, key, dense: nn.Module, make: Callable):
        """make(), computed once per key and dense model, then kept in `memo`."""
        got = self.memo.get(key)
        if got is None or got[0] is not dense:
            got = self.memo[key] = (dense, make())
        return got[1]

    def fine_tune(self, model: nn.Module, images: int | None = None) -> None:
        """Fine-tune `model` in place with the budget on tune_data (or its first `images`)."""
        b = self.budget
        if not b.epochs:
            return
        data = self.tune_data.subset(images, seed=None)
        train.fine_tune(model, data, epochs=b.epochs, lr=b.lr,
                        batch_size=min(b.batch_size, len(data.train)), augment=b.augment,
                        label_smoothing=b.label_smoothing, seed=self.seed, progress=self.progress)


def counted(model: nn.Module) -> int:
    """Nonzero Conv/Linear weights of `model`."""
    return count_weights(model)[0]


def counted_total(model: nn.Module) -> int:
    """All Conv/Linear weights of `model`."""
    return count_weights(model)[1]


def solve_knob(count: Callable[[float], int], target: int, lo: float = 0.0, hi: float = 0.999,
               iters: int = 16) -> float:
    """The smallest knob in [lo, hi] with count(knob) <= target, for a count that falls as
    the knob grows (hi when even hi does not reach it); bisection."""
    if count(hi) > target:
        return hi
    for _ in range(iters):
        mid = (lo + hi) / 2
        if count(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def check_target(c) -> float:
    """A compression factor as a float: a finite number >= 1 (2 = half the weights)."""
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 1 <= c < inf:
        raise ValueError(f"compression target={c!r} must be a finite number >= 1 "
                         "(2 = half the weights)")
    return float(c)


def _val_evaluator(ctx: Context, n: int):
    return train.evaluator(ctx.data.subset(n, "val", seed=None), "val")


# --------------------------------------------------------------------------- methods

def per_tensor(dense, c, ctx):
    """Magnitude pruning of every Conv/Linear to sparsity 1 - 1/c."""
    m = copy.deepcopy(dense)
    magnitude.prune_per_tensor(m, 1 - 1 / c)
    return m, {}


def global_oneshot(dense, c, ctx):
    """Global magnitude pruning (one shot) to sparsity 1 - 1/c."""
    m = copy.deepcopy(dense)
    magnitude.prune_global(m, 1 - 1 / c)
    return m, {}


def global_iterative(dense, c, ctx):
    """Global magnitude pruning, iterative (lab 03's schedules.run), in ``iterative_steps``.
    Step i prunes to 1 - 1/c^(i/n), each fine-tuned on 1/n of the budget's images (the last
    by the common step: info ``tune_images``), so the total equals the one-shot budget."""
    n = int(ctx.knobs.get("iterative_steps", 3))
    share = max(1, len(ctx.tune_data.train) // n)
    b, m = ctx.budget, copy.deepcopy(dense)
    targets = [1 - 1 / c ** (i / n) for i in range(1, n + 1)]
    if n > 1 and b.epochs:
        schedules.run(m, ctx.tune_data.subset(share, seed=None), targets[:-1], epochs=b.epochs,
                      lr=b.lr, batch_size=min(b.batch_size, share),
                      evaluate=lambda _m: float("nan"), seed=ctx.seed, augment=b.augment,
                      label_smoothing=b.label_smoothing, progress=ctx.progress,
                      desc="iterative")
    magnitude.prune_global(m, targets[-1])
    return m, dict(tune_images=share, iterative_steps=n)


def sensitivity_planned(dense, c, ctx):
    """Sensitivity-planned magnitude pruning (lab 02's planner), per-layer sparsities.
    One scan of every layer (``scan_sparsities``, accuracy on ``scan_images`` validation
    images), then sensitivity.plan_for_size picks the sparsities reaching 1/c of the dense
    size with the least predicted drop."""
    xs = list(ctx.knobs.get("scan_sparsities", (0.5, 0.75, 0.9, 0.95, 0.98, 0.99)))
    def scan():
        evaluate = _val_evaluator(ctx, min(ctx.knobs.get("scan_images", 500), len(ctx.data.val)))
        curves = sensitivity.scan(copy.deepcopy(dense), magnitude.prune_layer, xs, evaluate,
                                  progress=ctx.progress)
        return curves, evaluate(dense)
    curves, baseline = ctx.once("sensitivity", dense, scan)
    try:
        plan = sensitivity.plan_for_size(dense, curves, xs, 1 / c, baseline)
    except ValueError as e:   # the target is beyond the scanned range
        raise Unreachable(str(e)) from None
    m = copy.deepcopy(dense)
    magnitude.prune_per_tensor(m, plan)
    return m, dict(plan_max=max(plan.values()), plan_min=min(plan.values()))


def two_four(dense, c, ctx):
    """2:4 semi-structured magnitude pruning, about 2x whatever the target.
    Every layer whose input dim is a multiple of 4; info compression=2.0."""
    m = copy.deepcopy(dense)
    nm.prune_nm(m, 2, 4)
    return m, dict(compression=2.0, note="2:4 reaches only about 2x")


def mlp_units(dense, c, ctx):
    """Unit pruning of the MLP's hidden layers (L2 of the weight rows), physically removed.
    The same fraction per layer, searched so the small MLP has <= dense / c weights."""
    def shrunk(u):
        m = copy.deepcopy(dense)
        units.prune_units(m, u)
        return units.shrink_mlp(m)[0]
    u = solve_knob(lambda u: counted(shrunk(u)), int(counted_total(dense) / c))
    small = shrunk(u)
    return small, dict(reference=dense, structured=True, knob=u, hidden=list(small.hidden))


def vgg_channels(dense, c, ctx):
    """Channel pruning of every VGG conv (L2 of the next layer's inputs), physically removed.
    The same fraction per conv (lab 02's criterion), searched so the model has <= dense / c
    weights."""
    rank = [channels.l2_ranking(dense, i, by="next") for i in range(len(dense.channels))]
    def keep(f):
        return {i: rank[i][:max(1, int(round((1 - f) * n)))].sort().values
                for i, n in enumerate(dense.channels)}
    f = solve_knob(lambda f: counted(channels.shrink_vgg(dense, keep(f))),
                   int(counted_total(dense) / c))
    small = channels.shrink_vgg(dense, keep(f))
    return small, dict(reference=dense, structured=True, knob=f, channels=list(small.channels))


def _greedy_path(dense, c, ctx) -> dict:
    """{round(1/target, 6): GreedyResult}: one greedy search through every target of the
    run (and ``hybrid_greedy``)."""
    needed = sorted({c, *ctx.targets, ctx.knobs.get("hybrid_greedy", 2.0)})
    key = ("greedy", *(round(x, 6) for x in needed))
    res = ctx.once(key, dense, lambda: greedy.greedy_prune(
        dense, _val_evaluator(ctx, ctx.knobs["greedy_val_images"]), [1 / x for x in needed],
        by="params", step=ctx.knobs.get("greedy_step", 0.2), progress=ctx.progress,
        finetune=_round_fine_tune(ctx)))
    return {round(1 / r.target, 6): r for r in res}


def _round_fine_tune(ctx: Context) -> Callable | None:
    """Lab 04's per-round fine-tune of the greedy search: one epoch on a fixed subset of
    ``greedy_round_images`` training images, a new seed a round (None: no round fine-tunes).
    Without them the search, scored on a damaged net, cuts a layer to 1 channel."""
    n, b = ctx.knobs.get("greedy_round_images"), ctx.budget
    if not n:
        return None
    data, seeds = ctx.data.subset(n, seed=ctx.seed + 1), itertools.count(ctx.seed + 1)
    return lambda m: train.fine_tune(m, data, epochs=1, lr=b.lr, augment=b.augment,
                                     batch_size=min(b.batch_size, len(data.train)),
                                     label_smoothing=b.label_smoothing, seed=next(seeds),
                                     progress=ctx.progress, desc="round fine-tune")


def vgg_greedy(dense, c, ctx):
    """Greedy layer-wise filter pruning (lab 04) to params <= dense / c, physically removed.
    One search (methods.greedy) for all targets, with lab 04's per-round fine-tunes."""
    r = _greedy_path(dense, c, ctx)[round(c, 6)]
    return copy.deepcopy(r.model), dict(reference=dense, structured=True,
                                        channels=list(r.model.channels), greedy_steps=len(r.steps))


def vgg_hybrid(dense, c, ctx):
    """Hybrid (lab 04): greedy filter pruning to half the params, then global magnitude.
    From the greedy model at ``hybrid_greedy`` (2x), magnitude pruning of what remains to
    dense / c nonzero weights (c > 2)."""
    base = ctx.knobs.get("hybrid_greedy", 2.0)
    r = _greedy_path(dense, c, ctx)[round(base, 6)]
    if c <= base:
        raise Unreachable(f"hybrid starts from the greedy model at {base:g}x; "
                          f"target {c:g}x is not beyond it")
    s = 1 - (counted_total(dense) / c) / counted_total(r.model)
    small = greedy.hybrid(r, max(0.0, s))
    return small, dict(reference=dense, structured=True, channels=list(small.channels),
                       hybrid_sparsity=s)


def _sss_trained(dense, ctx) -> dict:
    """One SSS sparse-training run with lab 04's settings (lam from ``sss_shrink`` by
    sss.lam_for_shrink, or ``sss_lam``), its data, factors and their order."""
    k = ctx.knobs
    data = ctx.data.subset(k["sss_images"], seed=ctx.seed + 2) if k.get("sss_images") \
        else ctx.tune_data
    gate_lr = k.get("sss_gate_lr") or k["sss_lr"]
    lam = k.get("sss_lam")
    if k.get("sss_shrink") is not None:
        steps = k["sss_epochs"] * max(1, len(data.train) // k["sss_batch_size"])
        lam = sss.lam_for_shrink(dense, k["sss_shrink"], steps=steps, gate_lr=gate_lr)
    res = sss.sss_prune(dense, data, lam=lam, epochs=k["sss_epochs"], lr=k["sss_lr"],
                        gate_lr=gate_lr, batch_size=k["sss_batch_size"], seed=ctx.seed,
                        recalibrate=k.get("sss_recalibrate", 20), progress=ctx.progress)
    factors = [f.detach().abs().cpu() for f in res.factors]
    order = sorted((float(g[j]), i, j) for i, g in enumerate(factors) for j in range(len(g)))
    zeros = int((torch.cat([g.flatten() for g in factors]) == 0).sum())
    return dict(data=data, lam=lam, trained=res.trained, factors=factors, order=order,
                zeros=zeros)


def vgg_sss(dense, c, ctx):
    """Sparse Structure Selection (lab 04, methods.sss): BN factors chosen by L1 training.
    One sparse-training run of ``sss_epochs`` on ``sss_images`` training images (default:
    the budget's subset), extra to the common budget; then the channels of largest |factor|
    are kept (their count searched) so the model has <= dense / c weights."""
    t = ctx.once("sss", dense, lambda: _sss_trained(dense, ctx))
    rec = ctx.knobs.get("sss_recalibrate", 20)
    def small_at(n):   # drop the n smallest |factors| (each conv keeps at least its largest)
        dropped = {(i, j) for _, i, j in t["order"][:n]}
        keep = {i: torch.tensor([j for j in range(len(g)) if (i, j) not in dropped]
                                or [int(torch.argmax(g))], dtype=torch.long)
                for i, g in enumerate(t["factors"])}
        return channels.shrink_vgg(t["trained"], keep)
    lo, hi, total = 0, len(t["order"]), counted_total(dense)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if counted(small_at(mid)) <= total / c else (mid + 1, hi)
    small = small_at(lo)
    if rec:   # removed channels took their constant relu(beta) with them
        sss.recalibrate_bn(small, t["data"], rec)
    return small, dict(reference=dense, structured=True, channels=list(small.channels),
                       sss_zero_factors=t["zeros"], sss_lam=t["lam"],
                       extra_training=f"SSS {ctx.knobs['sss_epochs']} ep")


METHODS = {
    "magnitude, per tensor": (per_tensor, (MLP, VGG)),
    "magnitude, global one-shot": (global_oneshot, (MLP, VGG)),
    "magnitude, global iterative": (global_iterative, (MLP, VGG)),
    "sensitivity-planned": (sensitivity_planned, (MLP, VGG)),
    "units (physical)": (mlp_units, (MLP,)),
    "channels L2 (physical)": (vgg_channels, (VGG,)),
    "greedy filter (physical)": (vgg_greedy, (VGG,)),
    "SSS (physical)": (vgg_sss, (VGG,)),
    "hybrid greedy + magnitude": (vgg_hybrid, (VGG,)),
    "2:4 semi-structured": (two_four, (MLP, VGG)),
}


def applicable(model: nn.Module) -> list[str]:
    """Names of the METHODS that apply to `model`, in METHODS order."""
    return [name for name, (_, kinds) in METHODS.items() if isinstance(model, kinds)]


def describe(name: str) -> str:
    """The first sentence of method `name`'s docstring, on one line."""
    return " ".join(METHODS[name][0].__doc__.split()).split(". ")[0].rstrip(".")


def prune_to(name: str, model: nn.Module, target: float, ctx: Context) -> tuple[nn.Module, dict]:
    """Method `name` applied to a copy of `model` at compression factor `target` (>= 1):
    (pruned model, info). See labkit.methods for the contract."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {list(METHODS)}")
    fn, kinds = METHODS[name]
    if not isinstance(model, kinds):
        raise ValueError(f"method {name!r} does not apply to a {type(model).__name__}; "
                         f"for it: {applicable(model)}")
    check_target(target)
    pruned, info = fn(model, float(target), ctx)
    return pruned, {"compression": float(target), "structured": False, **info}
