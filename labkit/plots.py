"""Figures: weight histograms, accuracy-vs-sparsity curves, bars, saving.

Every function returns a matplotlib Figure; :func:`save` writes it (PNG,
atomically) under reports/<profile>/figures/ so the report index can show it
(during a report run, in the run's staging folder: see results.folder_for).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from . import results
from .io import atomic_write_bytes
from .metrics import pareto_front
from .prune.masks import prunable


def weight_histograms(model, bins: int = 60, nonzero_only: bool = False, cols: int = 4):
    """One histogram per Conv/Linear weight tensor (zeros left out when nonzero_only)."""
    layers = prunable(model)
    rows = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (name, m) in zip(axes.flat, layers.items()):
        w = m.weight.detach().flatten().float().cpu()
        if nonzero_only:
            w = w[w != 0]
        ax.hist(w.numpy(), bins=bins, color="tab:blue", alpha=0.8)
        ax.set_title(f"{name} ({m.weight.numel():,})", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.suptitle("weight distribution per layer" + (" (nonzero weights)" if nonzero_only else ""))
    fig.tight_layout()
    return fig


def accuracy_curves(curves: dict, xlabel: str = "sparsity (%)", title: str = "",
                    baseline: float | None = None, ylabel: str = "test accuracy (%)",
                    logx: bool = False):
    """Curves {label: (xs, accuracies in [0, 1])}, accuracy plotted in %."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (xs, ys) in curves.items():
        ax.plot(xs, [100 * y for y in ys], marker="o", ms=4, label=label)
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", ls="--", lw=1, label="dense")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def bars(groups: dict, labels: list, ylabel: str, title: str = ""):
    """Grouped bars: groups {series: [value per label]}."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    n = len(groups)
    width = 0.8 / max(1, n)
    for i, (series, values) in enumerate(groups.items()):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, values, width, label=series)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def training_curve(history, title: str = "training"):
    """Train loss and validation accuracy per epoch of a History."""
    ep = [e["epoch"] for e in history.epochs]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.plot(ep, [e["train_loss"] for e in history.epochs], "o-", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(ep, [100 * e["val_acc"] for e in history.epochs], "s-", color="tab:orange",
             label="val acc")
    ax2.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    fig.legend(loc="center right")
    fig.tight_layout()
    return fig


def save(fig, cfg, name: str) -> Path:
    """Write `fig` as reports/<profile>/figures/<lab>_<name>.png (atomically;
    the report runner stages it with the run's results, see results.folder_for)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    path = results.folder_for(cfg.profile) / "figures" / f"{cfg.lab}_{name}.png"
    return atomic_write_bytes(buf.getvalue(), path)


def pareto(series: dict, xlabel: str, *, lower_is_better: bool = True, title: str = "",
           baseline: float | None = None, logx: bool = False, ax=None):
    """Accuracy vs a cost for several methods, with the Pareto frontier over
    all points marked (a step line through the non-dominated points, circled).

    series: {method: (xs, accuracies in [0, 1])}; lower_is_better: whether a
    smaller x is better (size, latency) or a larger one (sparsity).
    Draws on `ax` when given; returns the Figure.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    pts = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys)]
    for label, (xs, ys) in series.items():
        ax.scatter(xs, [100 * y for y in ys], s=28, label=label, zorder=3)
    front = pareto_front([(x if lower_is_better else -x, y) for x, y in pts])
    if front:
        fx, fy = [pts[i][0] for i in front], [100 * pts[i][1] for i in front]
        ax.step(fx, fy, where="post", color="black", lw=1, alpha=0.7,
                label="Pareto frontier", zorder=2)
        ax.scatter(fx, fy, s=90, facecolors="none", edgecolors="black", zorder=4)
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", ls="--", lw=1, label="dense")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel + (" (lower is better)" if lower_is_better else " (higher is better)"))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def layer_sparsity(tables: dict, title: str = "per-layer sparsity chosen by global pruning"):
    """Per-layer sparsity (%) as horizontal bars, next to each layer's size.

    tables: {series: labkit.metrics.layer_table(model)} (rows with layer,
    params, sparsity); layers and sizes come from the first series. Left panel:
    sparsity of each layer per series; right panel: parameters per layer (log).
    """
    first = next(iter(tables.values()))
    names = [r["layer"] for r in first]
    sizes = [r["params"] for r in first]
    ys = list(range(len(names)))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.6, 0.26 * len(names) + 1.6), sharey=True,
                                  gridspec_kw=dict(width_ratios=(2, 1)))
    n = len(tables)
    h = 0.8 / max(1, n)
    for i, (series, rows) in enumerate(tables.items()):
        by_name = {r["layer"]: r["sparsity"] for r in rows}
        ax.barh([y + (i - (n - 1) / 2) * h for y in ys],
                [100 * by_name.get(k, 0.0) for k in names], h, label=series)
    ax.set_yticks(ys, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("sparsity of the layer (%)")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax2.barh(ys, sizes, 0.6, color="tab:gray")
    ax2.set_xscale("log")
    ax2.set_xlabel("weights in the layer (log)")
    ax2.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sensitivity_curves(curves: dict, xs: list, baseline: float | None = None,
                       plan: dict | None = None, xlabel: str = "sparsity (%)", cols: int = 3,
                       title: str = "sensitivity scan"):
    """One panel per layer: accuracy (%) after pruning only that layer, against
    xs (fractions, shown in %). curves: {layer: [accuracy in [0, 1] per x]};
    plan: {layer: chosen x}, drawn as a red vertical line."""
    names = list(curves)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes.flat, names):
        ax.plot([100 * x for x in xs], [100 * a for a in curves[name]], "o-", ms=3)
        if baseline is not None:
            ax.axhline(100 * baseline, color="gray", ls="--", lw=1)
        if plan and name in plan:
            ax.axvline(100 * plan[name], color="tab:red", lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes[0][0].set_ylabel("accuracy (%)", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def param_bars(counts: dict, title: str = "parameters per layer", log: bool = False):
    """Bars of parameter counts per layer. counts: {series: {layer: count}}
    (e.g. {'dense': ..., 'nonzero after pruning': ...}); layers from the first series."""
    labels = list(next(iter(counts.values())))
    fig = bars({s: [c.get(k, 0) for k in labels] for s, c in counts.items()},
               [k.split(".")[-1] for k in labels], "parameters", title)
    ax = fig.axes[0]
    if log:
        ax.set_yscale("log")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig


def comparison(groups: dict, axes_spec: list, title: str = ""):
    """Lab 05's grid: one row of panels per model pair, one panel per cost.

    groups: {row title: aggregated rows (labkit.results.aggregate) with
    'method', 'accuracy_mean', 'accuracy_std' and '<cost>_mean' fields};
    axes_spec: [(cost field, axis label)], each on a log axis. Each method has
    one colour and marker in every panel (one legend for the figure); ±std
    error bars; the Pareto frontier over all methods' means (lower cost,
    higher accuracy) is a black step line with circled points.
    """
    methods = list(dict.fromkeys(r["method"] for rows in groups.values() for r in rows))
    style = {m: (f"C{i % 10}", "osD^vP*Xh<>"[i // 10 % 11]) for i, m in enumerate(methods)}
    nrow, ncol = len(groups), len(axes_spec)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.0 * ncol + 2.2, 3.5 * nrow), squeeze=False)
    for r, (name, rows) in enumerate(groups.items()):
        for c, (cost, label) in enumerate(axes_spec):
            ax = axes[r][c]
            usable = [x for x in rows
                      if x.get(f"{cost}_mean") is not None and x.get("accuracy_mean") is not None]
            for x in usable:
                color, marker = style[x["method"]]
                ax.errorbar(x[f"{cost}_mean"], 100 * x["accuracy_mean"],
                            yerr=100 * x["accuracy_std"] if x.get("accuracy_std") else None,
                            color=color, marker=marker, ms=5, lw=0.8, capsize=2, ls="none",
                            zorder=3)
            front = pareto_front([(x[f"{cost}_mean"], x["accuracy_mean"]) for x in usable])
            if front:
                fx = [usable[i][f"{cost}_mean"] for i in front]
                fy = [100 * usable[i]["accuracy_mean"] for i in front]
                ax.step(fx, fy, where="post", color="black", lw=1, alpha=0.7, zorder=2)
                ax.scatter(fx, fy, s=110, facecolors="none", edgecolors="black", zorder=4)
            xs = [x[f"{cost}_mean"] for x in usable]
            # log only when the costs span a range
            if xs and min(xs) > 0 and max(xs) / min(xs) > 3:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(label, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel(f"{name}\ntest accuracy (%)", fontsize=8)
    handles = [plt.Line2D([], [], color=style[m][0], marker=style[m][1], ls="none", label=m)
               for m in methods]
    handles.append(plt.Line2D([], [], color="black", marker="o", mfc="none",
                              label="Pareto frontier"))
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / (4.0 * ncol + 2.2), 1))
    return fig


def csr_speedup(rows: list, title: str = "CSR vs dense kernels"):
    """Speed-up of CSR over dense (dense time / CSR time) against sparsity,
    one line per batch size; rows from labkit.sparse.csr_study."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for b in sorted({r["batch"] for r in rows}):
        pts = sorted((r["sparsity"], r["speedup"]) for r in rows if r["batch"] == b)
        ax.plot([100 * s for s, _ in pts], [v for _, v in pts], "o-", label=f"batch {b}")
    ax.axhline(1.0, color="gray", ls="--", lw=1, label="break-even")
    ax.set_yscale("log")
    ax.set_xlabel("sparsity of every Linear layer (%)")
    ax.set_ylabel("dense time / CSR time (> 1: sparse wins)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def speedup_gap(points: list, title: str = "measured vs theoretical speed-up"):
    """Measured latency speed-up against the MACs ratio (theory), with the
    y = x line. points: [{'label', 'theory', 'measured'}]."""
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    labels = sorted({p["label"] for p in points})
    for lab in labels:
        ps = [p for p in points if p["label"] == lab]
        ax.scatter([p["theory"] for p in ps], [p["measured"] for p in ps], label=lab, s=30,
                   zorder=3)
    hi = max([p["theory"] for p in points] + [p["measured"] for p in points] + [2.0])
    ax.plot([1, hi], [1, hi], color="black", lw=1, ls="--", label="measured = theory")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("theoretical speed-up (dense MACs / MACs)")
    ax.set_ylabel("measured speed-up (dense latency / latency)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
