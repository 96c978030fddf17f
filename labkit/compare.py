"""Lab 05's comparison: every pruning method on one frontier.

Each method prunes a copy of the same dense model to a list of compression
points ``c`` (c = 2 means half the dense model's nonzero Conv/Linear weights:
for a mask, global sparsity 1 - 1/c; for a structured method, the knob that
brings the physically smaller model's counted weights to <= dense / c; a
method reports the nearest point it reaches), then gets the SAME fine-tuning
:class:`Budget`, is evaluated on the test set and measured (counts, size
table, best sparse format on disk, MACs, CPU latency; for MLPs also the CSR
kernels' latency). One row per (model, method, point, seed) goes to
results.jsonl, with the fine-tuning budget and a hash of the methods'
settings (:func:`knobs_key`) that made it.

A method is a generator ``fn(dense, points, ctx) -> (point, model, info)``;
``info`` may hold ``reference`` (a structurally smaller model's original),
``structured`` (bool) and extra fields for the row. :func:`methods` lists the
methods available for a model.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import config, metrics, recipes, results, sensitivity, sparse, train
from .models import MLP, VGG
from .methods import greedy, schedules, sss
from .prune import channels, magnitude, masks, nm, units

VERSION = 2   # bump when a method's code changes what it would measure (old rows stop matching)


def knobs_key(knobs: dict) -> str:
    """A short hash of the methods' settings and :data:`VERSION` (timing settings excluded)."""
    keep = {k: v for k, v in sorted(knobs.items())
            if k not in ("latency_s", "latency_threads")}
    return hashlib.sha256(json.dumps([VERSION, keep], default=str).encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Budget:
    """The fine-tuning every pruned model gets: `epochs` over a fixed subset
    of `images` training images (None: all), SGD at `lr`, `batch_size`, with
    crop + flip when `augment` and `label_smoothing`."""

    epochs: int
    lr: float
    batch_size: int
    images: int | None = None
    augment: bool = False
    label_smoothing: float = 0.0

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"budget epochs={self.epochs!r} must be a non-negative integer")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"budget lr={self.lr!r} must be a positive number")
        if self.images is not None and (not isinstance(self.images, int) or self.images < 1):
            raise ValueError(f"budget images={self.images!r} must be a positive integer or None")
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            raise ValueError(f"budget label_smoothing={self.label_smoothing!r} must be in [0, 1)")

    def label(self) -> str:
        """A short string that identifies the budget in result rows."""
        imgs = "all" if self.images is None else f"{self.images}"
        return (f"{self.epochs}ep x {imgs} img, lr {self.lr:g}, bs {self.batch_size}, "
                f"aug {int(self.augment)}"
                + (f", ls {self.label_smoothing:g}" if self.label_smoothing else ""))


@dataclasses.dataclass
class Context:
    """What a method may need: the data, the budget and its training subset,
    the seed, and the profile's knobs (``knobs``: a dict)."""

    data: object
    tune_data: object
    seed: int
    knobs: dict
    budget: Budget
    progress: bool = False
    points: tuple = ()        # every point of this run (greedy searches once for all of them)
    greedy: list | None = None   # the greedy path, shared by the greedy and hybrid methods

    def fine_tune(self, model: nn.Module, images: int | None = None) -> None:
        """Fine-tune `model` in place with the budget on its subset (or on the
        first `images` of it, for a method that spends the budget in parts)."""
        b = self.budget
        if not b.epochs:
            return
        data = self.tune_data if images is None else _head(self.tune_data, images)
        train.fine_tune(model, data, epochs=b.epochs, lr=b.lr,
                        batch_size=min(b.batch_size, len(data.train)),
                        augment=b.augment, label_smoothing=b.label_smoothing, seed=self.seed,
                        progress=self.progress)


# --------------------------------------------------------------------------- helpers

def counted(model: nn.Module) -> int:
    """Nonzero Conv/Linear weights of `model`."""
    return masks.count_weights(model)[0]


def counted_total(model: nn.Module) -> int:
    """All Conv/Linear weights of `model`."""
    return masks.count_weights(model)[1]


def check_points(points) -> list[float]:
    """Compression points: numbers >= 1 (1 = dense), sorted, unique."""
    pts = list(points)
    for p in pts:
        if (isinstance(p, bool) or not isinstance(p, (int, float))
                or not (p >= 1 and math.isfinite(p))):
            raise ValueError(f"compression point {p!r} must be a finite number >= 1 "
                             "(2 = half the weights)")
    if not pts:
        raise ValueError("points is empty; give compression factors such as [2, 4, 8, 16, 32]")
    return sorted(set(float(p) for p in pts))


def solve_knob(count: Callable[[float], int], target: int, lo: float = 0.0, hi: float = 0.999,
           iters: int = 16) -> float:
    """The smallest knob in [lo, hi] with count(knob) <= target, for a count
    that falls as the knob grows (hi when even hi does not reach it)."""
    if count(hi) > target:
        return hi
    for _ in range(iters):
        mid = (lo + hi) / 2
        if count(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


# --------------------------------------------------------------------------- methods

def per_tensor(dense, points, ctx):
    """Magnitude pruning of every Conv/Linear to sparsity 1 - 1/c."""
    for c in points:
        m = copy.deepcopy(dense)
        magnitude.prune_per_tensor(m, 1 - 1 / c)
        yield c, m, {}


def global_oneshot(dense, points, ctx):
    """Global magnitude pruning (one shot) to sparsity 1 - 1/c."""
    for c in points:
        m = copy.deepcopy(dense)
        magnitude.prune_global(m, 1 - 1 / c)
        yield c, m, {}


def global_iterative(dense, points, ctx):
    """Global magnitude pruning, iterative (lab 03's labkit.methods.schedules.run):
    ``iterative_steps`` prunes to 1 - 1/c^(i/n), each followed by fine-tuning on
    1/n of the budget's images (the last one by the common step), so the total
    fine-tuning equals the one-shot methods' budget."""
    n = int(ctx.knobs.get("iterative_steps", 3))
    share = max(1, len(ctx.tune_data.train) // n)
    part = _head(ctx.tune_data, share)
    b = ctx.budget
    for c in points:
        m = copy.deepcopy(dense)
        targets = [1 - 1 / c ** (i / n) for i in range(1, n + 1)]
        if n > 1 and b.epochs:
            schedules.run(m, part, targets[:-1], epochs=b.epochs, lr=b.lr,
                          batch_size=min(b.batch_size, share),
                          evaluate=lambda _m: float("nan"), seed=ctx.seed, augment=b.augment,
                          label_smoothing=b.label_smoothing,
                          progress=ctx.progress, desc="iterative")
        magnitude.prune_global(m, targets[-1])
        yield c, m, dict(tune_images=share, iterative_steps=n)


def sensitivity_planned(dense, points, ctx):
    """Sensitivity-planned fine-grained pruning (lab 02's planner): one scan of
    every layer (magnitude, ``scan_sparsities``, accuracy on ``scan_images``
    validation images), then for each point labkit.sensitivity.plan_for_size
    picks per-layer sparsities reaching 1/c of the dense size with the least
    predicted drop; each layer is pruned by magnitude to its planned sparsity."""
    evaluate = greedy.batch_evaluator(ctx.data,
                                      min(ctx.knobs.get("scan_images", 500), len(ctx.data.val)))
    xs = list(ctx.knobs.get("scan_sparsities", (0.5, 0.75, 0.9, 0.95, 0.98, 0.99)))
    probe = copy.deepcopy(dense)
    curves = sensitivity.scan(probe, magnitude.prune_layer, xs, evaluate, progress=ctx.progress)
    baseline = evaluate(dense)
    for c in points:
        try:
            plan = sensitivity.plan_for_size(dense, curves, xs, 1 / c, baseline)
        except ValueError as e:   # the target is beyond the scanned range: say so, skip the point
            print(f"sensitivity-planned, {c:g}x: skipped ({e})")
            continue
        m = copy.deepcopy(dense)
        magnitude.prune_per_tensor(m, plan)
        yield c, m, dict(plan_max=max(plan.values()), plan_min=min(plan.values()))


def two_four(dense, points, ctx):
    """2:4 semi-structured magnitude pruning of every layer whose input dim is
    a multiple of 4: one point, about c = 2 (whatever the points asked)."""
    m = copy.deepcopy(dense)
    nm.prune_nm(m, 2, 4)
    yield 2.0, m, dict(note="2:4 reaches only about 2x")


def mlp_units(dense, points, ctx):
    """Unit pruning of the MLP's hidden layers (same fraction per layer, L2 of
    the weight rows), physically removed; the fraction is searched so the
    small MLP has <= dense / c counted weights."""
    total = counted_total(dense)

    def shrunk(u):
        m = copy.deepcopy(dense)
        units.prune_units(m, u)
        return units.shrink_mlp(m)[0]
    for c in points:
        u = solve_knob(lambda u: counted(shrunk(u)), int(total / c))
        small = shrunk(u)
        yield c, small, dict(reference=dense, structured=True, knob=u, hidden=list(small.hidden))


def vgg_channels(dense, points, ctx):
    """Channel pruning of every VGG conv (same fraction per conv, ranked by the
    L2 norm of the next layer's input weights, lab 02's criterion), physically
    removed; the fraction is searched so the model has <= dense / c weights."""
    total = counted_total(dense)
    n = len(dense.channels)
    rank = [channels.l2_ranking(dense, i, by="next") for i in range(n)]

    def keep(f):
        return {i: rank[i][:max(1, int(round((1 - f) * c)))].sort().values
                for i, c in enumerate(dense.channels)}
    for c in points:
        f = solve_knob(lambda f: counted(channels.shrink_vgg(dense, keep(f))), int(total / c))
        small = channels.shrink_vgg(dense, keep(f))
        yield c, small, dict(reference=dense, structured=True, knob=f,
                             channels=list(small.channels))


def _greedy_results(dense, points, ctx):
    """The greedy path through every point of the run (and hybrid_greedy), searched once."""
    needed = set(points) | set(ctx.points) | {ctx.knobs.get("hybrid_greedy", 2.0)}
    if ctx.greedy is None or not ({round(c, 6) for c in needed}
                                  <= {round(1 / r.target, 6) for r in ctx.greedy}):
        evaluate = greedy.batch_evaluator(ctx.data, ctx.knobs["greedy_val_images"])
        targets = [1 / c for c in sorted(needed)]
        ctx.greedy = greedy.greedy_prune(
            dense, evaluate, targets, by="params", step=ctx.knobs.get("greedy_step", 0.2),
            progress=ctx.progress)
    return ctx.greedy


def vgg_greedy(dense, points, ctx):
    """Greedy layer-wise filter pruning (lab 04, labkit.methods.greedy) to params
    <= dense / c, one run for all points; no fine-tuning between steps."""
    res = _greedy_results(dense, points, ctx)
    by_target = {round(1 / r.target, 6): r for r in res}
    for c in points:
        r = by_target[round(c, 6)]
        yield c, copy.deepcopy(r.model), dict(reference=dense, structured=True,
                                              channels=list(r.model.channels),
                                              greedy_steps=len(r.steps))


def vgg_hybrid(dense, points, ctx):
    """Hybrid (lab 04): greedy filter pruning to half the params, then global
    magnitude pruning of what remains to dense / c nonzero weights (c > 2)."""
    base = ctx.knobs.get("hybrid_greedy", 2.0)
    r = {round(1 / x.target, 6): x for x in _greedy_results(dense, points, ctx)}[round(base, 6)]
    total = counted_total(dense)
    for c in points:
        if c <= base:
            continue
        s = 1 - (total / c) / counted_total(r.model)
        small = greedy.hybrid(r, max(0.0, s))
        yield c, small, dict(reference=dense, structured=True, channels=list(small.channels),
                             hybrid_sparsity=s)


def vgg_sss(dense, points, ctx):
    """Sparse Structure Selection (lab 04, labkit.methods.sss): one sparse-training
    run of ``sss_epochs`` on ``sss_images`` training images (default: the
    budget's subset) (sss.sss_prune; lam = ``sss_lam``, or from ``sss_shrink``
    with sss.lam_for_shrink as lab 04 picks it; gate lr ``sss_gate_lr``), then
    for each point the channels with the largest |factors| are kept (a
    threshold is searched) so the model has <= dense / c weights. The sparse
    training is extra training on top of the common fine-tuning budget."""
    k = ctx.knobs
    sss_data = (_subset(ctx.data, k["sss_images"], ctx.seed + 2) if k.get("sss_images")
                else ctx.tune_data)
    gate_lr = k.get("sss_gate_lr") or k["sss_lr"]
    lam = k.get("sss_lam")
    # lab 04's way to pick lam: a soft-threshold budget in median |gamma|
    if k.get("sss_shrink") is not None:
        steps = k["sss_epochs"] * max(1, len(sss_data.train) // k["sss_batch_size"])
        lam = sss.lam_for_shrink(dense, k["sss_shrink"], steps=steps, gate_lr=gate_lr)
    res = sss.sss_prune(dense, sss_data, lam=lam, epochs=k["sss_epochs"], lr=k["sss_lr"],
                        gate_lr=gate_lr, batch_size=k["sss_batch_size"], seed=ctx.seed,
                        recalibrate=k.get("sss_recalibrate", 20), progress=ctx.progress)
    trained, factors = res.trained, [f.detach().abs().cpu() for f in res.factors]
    values = torch.cat([g.flatten().cpu() for g in factors]).sort().values
    total = counted_total(dense)
    zeros = int((values == 0).sum())

    order = sorted((float(g[j]), i, j) for i, g in enumerate(factors) for j in range(len(g)))

    # drop the k smallest |factors| over all convs (each conv keeps at least its largest)
    def small_at(k):
        dropped = {(i, j) for _, i, j in order[:k]}
        keep = {}
        for i, g in enumerate(factors):
            kept = [j for j in range(len(g)) if (i, j) not in dropped] or [int(torch.argmax(g))]
            keep[i] = torch.tensor(kept, dtype=torch.long)
        return channels.shrink_vgg(trained, keep)
    for c in points:
        lo, hi = 0, len(values)
        while lo < hi:
            mid = (lo + hi) // 2
            if counted(small_at(mid)) <= total / c:
                hi = mid
            else:
                lo = mid + 1
        small = small_at(lo)
        # removed channels took their constant relu(beta) with them
        if k.get("sss_recalibrate", 20):
            sss.recalibrate_bn(small, sss_data, k.get("sss_recalibrate", 20))
        yield c, small, dict(reference=dense, structured=True, channels=list(small.channels),
                             sss_zero_factors=zeros, sss_lam=lam,
                             extra_training=f"SSS {k['sss_epochs']} ep")


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


def methods(model: nn.Module) -> list[str]:
    """Names of the methods of :data:`METHODS` that apply to `model`."""
    return [name for name, (_, kinds) in METHODS.items() if isinstance(model, kinds)]


# --------------------------------------------------------------------------- measuring

def disk_mib(model: nn.Module, fmt: str = "best") -> float:
    """MiB on disk of `model` saved with labkit.sparse in `fmt`."""
    with tempfile.TemporaryDirectory(prefix="labkit-disk-") as tmp:
        return sparse.save(model, Path(tmp) / "m.lks", fmt)["bytes"] / metrics.MIB


def measure(model: nn.Module, input_shape: tuple, reference: nn.Module | None,
            timing: bool = True, threads: int = 1, min_run_time: float = 0.3) -> dict:
    """metrics.measure (without its timing) plus: the best sparse format's
    bytes on disk (``disk_best_mib``), the batch-1 CPU latency with `threads`
    threads (``latency_cpu_ms``, dense kernels) and, for MLPs, with the CSR
    kernels (``latency_csr_ms``); ``latency_best_ms`` is the faster of the two;
    with a `reference` (the dense original of a smaller model) also the
    reference's latency timed right after (``latency_dense_ms``), so the
    speed-up is measured side by side, not against a timing taken earlier.
    One thread by default: on a shared machine a multi-threaded timing
    measures the neighbours' load more than the model."""
    cpu = copy.deepcopy(model).cpu().eval()
    out = metrics.measure(cpu, input_shape, reference=reference, timing=False)
    out["disk_best_mib"] = disk_mib(cpu, "best")
    if timing:
        t = dict(batch=1, threads=threads, min_run_time=min_run_time)
        out["latency_cpu_ms"] = 1e3 * metrics.latency(cpu, input_shape, **t)
        out["latency_best_ms"] = out["latency_cpu_ms"]
        out["latency_threads"] = threads
        if isinstance(model, MLP):
            out["latency_csr_ms"] = 1e3 * metrics.latency(sparse.to_csr(cpu), input_shape, **t)
            out["latency_best_ms"] = min(out["latency_cpu_ms"], out["latency_csr_ms"])
        if reference is not None:   # the dense original, timed right after (for speed-up ratios)
            out["latency_dense_ms"] = 1e3 * metrics.latency(reference.cpu().eval(), input_shape,
                                                            **t)
    return out


# --------------------------------------------------------------------------- running

def run(cfg, data, model_name: str, dense: nn.Module, dense_key: str, names: list, points,
        budget: Budget, seed: int, knobs: dict | None = None,
        timing: bool = True, progress: bool = False, log=print) -> list[dict]:
    """Run each method of `names` on `dense` at `points` for one seed, with the
    same `budget`; record one row per point. Returns the rows.

    dense_key: identifies the dense model (labkit.train.cache_key);
    knobs: the profile's settings some methods need (greedy_val_images,
    greedy_step, hybrid_greedy, sss_lam or sss_shrink, sss_gate_lr, sss_epochs,
    sss_lr, sss_batch_size, sss_recalibrate, iterative_steps, scan_images,
    scan_sparsities), eval_before (test accuracy before fine-tuning too,
    default True) and the timer's (latency_threads, default 1; latency_s,
    default 0.3 s per timing).
    """
    points = check_points(points)
    timer = dict(threads=(knobs or {}).get("latency_threads", 1),
                 min_run_time=(knobs or {}).get("latency_s", 0.3))
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; have {list(METHODS)}")
    ctx = Context(data, data if budget.images is None or budget.images >= len(data.train)
                  else _subset(data, budget.images, seed), seed,
                  dict(knobs or {}), budget, progress, points=tuple(points))
    scfg = config.Config(cfg)
    scfg["seed"] = seed
    knobs_hash = knobs_key(knobs or {})
    dense_counted = counted_total(dense)
    rows = []
    for name in names:
        fn, kinds = METHODS[name]
        if not isinstance(dense, kinds):
            raise ValueError(f"method {name!r} does not apply to a {type(dense).__name__}")
        done = set()
        for c, model, info in fn(dense, points, ctx):
            # a method that reaches only its own point (2:4) may yield it more than once
            if c in done:
                continue
            done.add(c)
            info = dict(info)
            reference = info.pop("reference", None)
            structured = info.pop("structured", False)
            before = (train.evaluate(model, data) if ctx.knobs.get("eval_before", True)
                      else None)
            ctx.fine_tune(model, info.get("tune_images"))
            acc = train.evaluate(model, data)
            m = measure(model, data.shape, reference, timing=timing, **timer)
            row = results.record(scfg, data, method=name, model=model_name, point=c, accuracy=acc,
                                 accuracy_official=train.official(model, data), metrics=m,
                                 dense_key=dense_key, budget=budget.label(), knobs=knobs_hash,
                                 accuracy_before=before,
                                 structured=structured,
                                 compression=dense_counted / max(1, counted(model)), **info)
            rows.append(row)
            log(f"{model_name} | {name} | {c:g}x (reached {row['compression']:.1f}x) | "
                f"seed {seed}: accuracy "
                + (f"{100 * before:.2f}% -> " if before is not None else "")
                + f"{100 * acc:.2f}% after fine-tuning")
    return rows


def _head(data, n: int):
    """`data` with its training split cut to the first `n` images (itself when n >= its size)."""
    if n >= len(data.train):
        return data
    return dataclasses.replace(data, train=type(data.train)(data.train.x[:n], data.train.y[:n]))


def _subset(data, n: int, seed: int):
    return greedy.train_subset(data, n, seed)


def dense_row(cfg, data, model_name: str, dense: nn.Module, dense_key: str, seed: int,
              timing: bool = True, knobs: dict | None = None) -> dict:
    """Record (and return) the dense model's row: method 'dense', point 1."""
    scfg = config.Config(cfg)
    scfg["seed"] = seed
    knobs = knobs or {}
    m = measure(dense, data.shape, None, timing=timing, threads=knobs.get("latency_threads", 1),
                min_run_time=knobs.get("latency_s", 0.3))
    return results.record(scfg, data, method="dense", model=model_name, point=1.0,
                          accuracy=train.evaluate(dense, data),
                          accuracy_official=train.official(dense, data), metrics=m,
                          dense_key=dense_key, structured=False, compression=1.0)


def dense_model(model_name: str, data, profile: str, seed: int, progress: bool = False,
                **overrides):
    """The shared dense model (labkit.train.dense, recipe overrides as the lab
    that owns it uses them) and its cache key."""
    model, history = train.dense(model_name, data, profile, seed=seed, progress=progress,
                                 **overrides)
    hp = recipes.dense(model_name, profile, **overrides)
    width = hp.pop("width")
    return model, train.cache_key(model_name, width, data, hp, seed)
