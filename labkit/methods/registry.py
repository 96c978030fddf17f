"""The one method interface, ``prune_to(name, model, target, ctx) -> (model, info)`` (the
contract: labkit.methods). METHODS maps a name to (adapter fn(dense, c, ctx), model classes)."""
from __future__ import annotations

import bisect
import copy
import dataclasses
from math import inf
from typing import Callable

import torch
from torch import nn

from .. import sensitivity, train
from ..config import check_fraction, check_int, check_positive
from ..models import MLP, VGG
from ..prune import channels, magnitude, nm, units
from ..prune.masks import count_weights
from . import greedy, schedules, sss

class Unreachable(ValueError):
    """A method cannot produce the asked-for target (e.g. hybrid at or below its greedy start)."""

@dataclasses.dataclass(frozen=True)
class Budget:
    """The fine-tuning every pruned model gets: `epochs` over a fixed subset of `images`
    training images (None: all), SGD at `lr`, crop + flip when `augment`."""
    epochs: int
    lr: float
    batch_size: int
    images: int | None = None
    augment: bool = False
    label_smoothing: float = 0.0

    def __post_init__(self):
        check_int("budget epochs", self.epochs, 0)
        check_positive("budget lr", self.lr)
        if self.images is not None:
            check_int("budget images", self.images, 1, what="or None: every image")
        check_fraction("budget label_smoothing", self.label_smoothing)

    def label(self) -> str:
        """A short string that identifies the budget in result rows."""
        imgs = "all" if self.images is None else f"{self.images}"
        ls = f", ls {self.label_smoothing:g}" if self.label_smoothing else ""
        return (f"{self.epochs}ep x {imgs} img, lr {self.lr:g}, bs {self.batch_size}, "
                f"aug {int(self.augment)}{ls}")

    def fit_kw(self, images: int) -> dict:
        """train.fine_tune's keywords for a training set of `images` images."""
        return dict(epochs=self.epochs, lr=self.lr, batch_size=min(self.batch_size, images),
                    augment=self.augment, label_smoothing=self.label_smoothing)

@dataclasses.dataclass
class Context:
    """What a method may need: data, budget (tune_data: its training subset), seed, settings
    (`knobs`), every target of the run and `memo`, the work shared by a dense model's targets."""
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
        if self.budget.epochs:
            data = self.tune_data.subset(images, seed=None)
            train.fine_tune(model, data, **self.budget.fit_kw(len(data.train)), seed=self.seed,
                            progress=self.progress)

def solve_knob(count: Callable[[float], int], target: int, lo: float = 0.0, hi: float = 0.999,
               iters: int = 16) -> float:
    """Bisection: the smallest knob in [lo, hi] with count(knob) <= target (count falls as
    the knob grows; hi when even hi does not reach it)."""
    if count(hi) > target:
        return hi
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if count(mid) <= target else (mid, hi)
    return hi

def check_target(c) -> float:
    """A compression factor as a float: a finite number >= 1."""
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 1 <= c < inf:
        raise ValueError(f"compression target={c!r} must be a finite number >= 1 "
                         "(2 = half the weights)")
    return float(c)

def _val_evaluator(ctx: Context, n: int):
    return train.evaluator(ctx.data.subset(n, "val", seed=None), "val")

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
    Step i of n prunes to 1 - 1/c^(i/n) and is fine-tuned on 1/n of the budget's images."""
    n = int(ctx.knobs.get("iterative_steps", 3))
    share = max(1, len(ctx.tune_data.train) // n)
    m, targets = copy.deepcopy(dense), [1 - 1 / c ** (i / n) for i in range(1, n + 1)]
    if n > 1 and ctx.budget.epochs:
        schedules.run(m, ctx.tune_data.subset(share, seed=None), targets[:-1],
                      evaluate=lambda _m: float("nan"), seed=ctx.seed, progress=ctx.progress,
                      desc="iterative", **ctx.budget.fit_kw(share))
    magnitude.prune_global(m, targets[-1])
    return m, dict(tune_images=share, iterative_steps=n)

def sensitivity_planned(dense, c, ctx):
    """Sensitivity-planned magnitude pruning (lab 02's planner), per-layer sparsities.
    One scan (``scan_sparsities`` on ``scan_images`` validation images), then plan_for_size."""
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
    """2:4 semi-structured magnitude pruning, about 2x whatever the target."""
    m = copy.deepcopy(dense)
    nm.prune_nm(m, 2, 4)
    return m, dict(compression=2.0, note="2:4 reaches only about 2x")

def mlp_units(dense, c, ctx):
    """Unit pruning of the MLP's hidden layers (L2 of the weight rows), physically removed.
    The same fraction per layer, searched for <= dense / c weights."""
    def shrunk(u):
        m = copy.deepcopy(dense)
        units.prune_units(m, u)
        return units.shrink_mlp(m)[0]
    u = solve_knob(lambda u: count_weights(shrunk(u))[0], int(count_weights(dense)[1] / c))
    small = shrunk(u)
    return small, dict(reference=dense, structured=True, knob=u, hidden=list(small.hidden))

def vgg_channels(dense, c, ctx):
    """Channel pruning of every VGG conv (L2 of the next layer's inputs), physically removed.
    The same fraction per conv (lab 02's criterion), searched for <= dense / c weights."""
    rank = [channels.l2_ranking(dense, i, by="next") for i in range(len(dense.channels))]
    def keep(f):
        return {i: rank[i][:max(1, int(round((1 - f) * n)))].sort().values
                for i, n in enumerate(dense.channels)}
    f = solve_knob(lambda f: count_weights(channels.shrink_vgg(dense, keep(f)))[0],
                   int(count_weights(dense)[1] / c))
    small = channels.shrink_vgg(dense, keep(f))
    return small, dict(reference=dense, structured=True, knob=f, channels=list(small.channels))

def _greedy_path(dense, c, ctx) -> dict:
    """{round(c, 6): GreedyResult}: one search through every target (and ``hybrid_greedy``);
    no conv below ``greedy_min_channels`` channels."""
    needed = sorted({c, *ctx.targets, ctx.knobs.get("hybrid_greedy", 2.0)})
    key = ("greedy", *(round(x, 6) for x in needed))
    res = ctx.once(key, dense, lambda: greedy.greedy_prune(
        dense, _val_evaluator(ctx, ctx.knobs["greedy_val_images"]), [1 / x for x in needed],
        by="params", step=ctx.knobs.get("greedy_step", 0.2), progress=ctx.progress,
        min_channels=ctx.knobs.get("greedy_min_channels", 1), finetune=_round_fine_tune(ctx)))
    return {round(1 / r.target, 6): r for r in res}

def _round_fine_tune(ctx: Context) -> Callable | None:
    """Lab 04's per-round fine-tune of the greedy search: one epoch on a fixed subset of
    ``greedy_round_images`` training images, a new seed a round (None: no round fine-tunes)."""
    n = ctx.knobs.get("greedy_round_images")
    if not n:
        return None
    data = ctx.data.subset(n, seed=ctx.seed + 1)
    kw = {k: v for k, v in ctx.budget.fit_kw(len(data.train)).items() if k != "epochs"}
    return greedy.round_fine_tune(data, seed=ctx.seed + 1, progress=ctx.progress, **kw)

def vgg_greedy(dense, c, ctx):
    """Greedy layer-wise filter pruning (lab 04) to params <= dense / c, physically removed."""
    r = _greedy_path(dense, c, ctx)[round(c, 6)]
    return copy.deepcopy(r.model), dict(reference=dense, structured=True,
                                        channels=list(r.model.channels), greedy_steps=len(r.steps))

def vgg_hybrid(dense, c, ctx):
    """Hybrid (lab 04): greedy filter pruning to half the params, then global magnitude.
    The greedy model at ``hybrid_greedy`` (2x) pruned to dense / c nonzero weights."""
    base = ctx.knobs.get("hybrid_greedy", 2.0)
    r = _greedy_path(dense, c, ctx)[round(base, 6)]
    if c <= base:
        raise Unreachable(f"hybrid starts from the greedy model at {base:g}x; "
                          f"target {c:g}x is not beyond it")
    s = 1 - (count_weights(dense)[1] / c) / count_weights(r.model)[1]
    small = greedy.hybrid(r, max(0.0, s))
    return small, dict(reference=dense, structured=True, channels=list(small.channels),
                       hybrid_sparsity=s)

def _sss_trained(dense, ctx) -> dict:
    """One SSS run with lab 04's settings (lam from ``sss_shrink``, or ``sss_lam``)."""
    k, rec = ctx.knobs, ctx.knobs.get("sss_recalibrate", 20)
    data = ctx.data.subset(k["sss_images"], seed=ctx.seed + 2) if k.get("sss_images") \
        else ctx.tune_data
    gate_lr = k.get("sss_gate_lr") or k["sss_lr"]
    lam = k.get("sss_lam")
    if k.get("sss_shrink") is not None:
        steps = k["sss_epochs"] * max(1, len(data.train) // k["sss_batch_size"])
        lam = sss.lam_for_shrink(dense, k["sss_shrink"], steps=steps, gate_lr=gate_lr)
    res = sss.sss_prune(dense, data, lam=lam, epochs=k["sss_epochs"], lr=k["sss_lr"],
                        gate_lr=gate_lr, batch_size=k["sss_batch_size"], seed=ctx.seed,
                        recalibrate=rec, progress=ctx.progress)
    factors = [f.detach().abs().cpu() for f in res.factors]
    order = sorted((float(g[j]), i, j) for i, g in enumerate(factors) for j in range(len(g)))
    return dict(data=data, lam=lam, trained=res.trained, factors=factors, order=order,
                zeros=res.zeros(), rec=rec)

def vgg_sss(dense, c, ctx):
    """Sparse Structure Selection (lab 04, methods.sss): BN factors chosen by L1 training.
    One run of ``sss_epochs`` on ``sss_images`` (default: the budget's); the channels of
    largest |factor| are kept (their count searched) for <= dense / c weights."""
    t = ctx.once("sss", dense, lambda: _sss_trained(dense, ctx))
    def small_at(n):   # drop the n smallest |factors| (each conv keeps at least its largest)
        dropped = {(i, j) for _, i, j in t["order"][:n]}
        keep = {i: torch.tensor([j for j in range(len(g)) if (i, j) not in dropped]
                                or [int(torch.argmax(g))], dtype=torch.long)
                for i, g in enumerate(t["factors"])}
        return channels.shrink_vgg(t["trained"], keep)
    total = count_weights(dense)[1]   # the fewest dropped that reach dense / c, by bisection:
    n = bisect.bisect_left(range(len(t["order"])), True,
                           key=lambda n: count_weights(small_at(n))[0] <= total / c)
    small = small_at(n)
    if t["rec"]:   # removed channels took their constant relu(beta) with them
        sss.recalibrate_bn(small, t["data"], t["rec"])
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
    """(pruned copy of `model`, info): method `name` at compression factor `target` (>= 1)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {list(METHODS)}")
    fn, kinds = METHODS[name]
    if not isinstance(model, kinds):
        raise ValueError(f"method {name!r} does not apply to a {type(model).__name__}; "
                         f"for it: {applicable(model)}")
    target = check_target(target)
    pruned, info = fn(model, target, ctx)
    return pruned, {"compression": target, "structured": False, **info}
