"""Figures of the labs; each returns a matplotlib Figure, :func:`save` writes it as a PNG. An axis
that shows a sparsity names which one (sparsity, removed or relative: docs/design.md)."""
import io
import math

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from . import results
from .io import atomic_write_bytes
from .metrics import pareto_front
from .prune.masks import prunable

def _grid(n: int, cols: int, w: float, h: float, **kw):
    """(fig, the first n axes) of a grid of w x h inch panels; unused panels switched off."""
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(w * cols, h * math.ceil(n / cols)),
                             squeeze=False, **kw)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]

def _finish(fig, ax, xlabel: str, ylabel: str, title: str = "", axis: str = "both", **legend):
    """Labels, title, grid and legend of one panel; tight layout; returns fig."""
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, axis=axis, which="both")
    ax.legend(**legend)
    fig.tight_layout()
    return fig

def weight_histograms(model, bins: int = 60, cols: int = 4):
    """One histogram per Conv/Linear weight tensor, `cols` panels a row."""
    layers = prunable(model)
    fig, axes = _grid(len(layers), cols, 3.2, 2.4)
    for ax, (name, m) in zip(axes, layers.items()):
        ax.hist(m.weight.detach().flatten().float().cpu().numpy(), bins=bins, alpha=0.8)
        ax.set_title(f"{name} ({m.weight.numel():,})", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("weight distribution per layer")
    fig.tight_layout()
    return fig

def accuracy_curves(curves: dict, xlabel: str, title: str = "", baseline: float | None = None):
    """Curves {label: (xs, accuracies in [0, 1])} in %; xlabel names x (which sparsity)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (xs, ys) in curves.items():
        ax.plot(xs, [100 * y for y in ys], marker="o", ms=4, label=label)
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", ls="--", lw=1, label="dense")
    return _finish(fig, ax, xlabel, "test accuracy (%)", title)

def bars(groups: dict, labels: list | None, ylabel: str, title: str = "", log: bool = False,
         line: dict | None = None):
    """Grouped bars {series: [value per label]} (labels=None: {series: {layer: value}}, layers of
    the first series); line {label: values}: a line on a right-hand axis (latency beside size)."""
    if labels is None:
        keys = list(next(iter(groups.values())))
        groups = {s: [v.get(k, 0) for k in keys] for s, v in groups.items()}
        labels = [k.split(".")[-1] for k in keys]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    width = 0.8 / max(1, len(groups))
    for i, (series, values) in enumerate(groups.items()):
        shift = (i - (len(groups) - 1) / 2) * width
        ax.bar([j + shift for j in range(len(labels))], values, width, label=series)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yscale("log" if log else "linear")
    for name, values in (line or {}).items():
        ax2 = ax.twinx()
        ax2.plot(range(len(values)), values, "kD--", label=name)
        ax2.set(ylabel=name, ylim=(0, None))
        ax2.legend(loc="upper center")
    return _finish(fig, ax, "", ylabel, title, axis="y")

def training_curve(history, title: str = "training"):
    """Train loss and validation accuracy per epoch of a History."""
    ep = [e["epoch"] for e in history.epochs]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.plot(ep, [e["train_loss"] for e in history.epochs], "o-", label="train loss")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax2 = ax.twinx()
    ax2.plot(ep, [100 * e["val_acc"] for e in history.epochs], "s-", c="C1", label="val acc")
    ax2.set_ylabel("validation accuracy (%)")
    fig.legend(loc="center right")
    fig.tight_layout()
    return fig

def save(fig, cfg, name: str):
    """Write `fig` atomically as <reports>/<profile>/figures/<lab>_<name>.png; return the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    path = results.folder_for(cfg.profile) / "figures" / f"{cfg.lab}_{name}.png"
    return atomic_write_bytes(buf.getvalue(), path)

def pareto(series: dict, xlabel: str, *, lower_is_better: bool = True, title: str = "", ax=None):
    """Accuracy (%) vs a cost with the Pareto frontier of all points, on `ax` if given. series:
    {method: (xs, accuracies in [0, 1])}; lower_is_better: small x wins (size), else large."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2)) if ax is None else (ax.figure, ax)
    pts = [(x, 100 * y) for xs, ys in series.values() for x, y in zip(xs, ys)]
    for label, (xs, ys) in series.items():
        ax.scatter(xs, [100 * y for y in ys], s=28, label=label, zorder=3)
    fx, fy = zip(*[pts[i] for i in pareto_front([(x if lower_is_better else -x, y)
                                                  for x, y in pts])]) if pts else ((), ())
    ax.step(fx, fy, where="post", c="black", lw=1, alpha=0.7, label="Pareto frontier", zorder=2)
    ax.scatter(fx, fy, s=90, facecolors="none", edgecolors="black", zorder=4)
    better = " (lower is better)" if lower_is_better else " (higher is better)"
    return _finish(fig, ax, xlabel + better, "test accuracy (%)", title, fontsize=8)

def pareto_panels(rows: list, axes_spec: list, title: str = ""):
    """A :func:`pareto` panel of results rows per (field, label, lower_is_better, scale)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(axes_spec), figsize=(16, 4.6), squeeze=False)
    for ax, (key, label, lower, scale) in zip(axes[0], axes_spec):
        series = {m: ([scale * r[key] for r in rows if r["method"] == m],
                      [r["accuracy"] for r in rows if r["method"] == m]) for m in methods}
        pareto(series, label, lower_is_better=lower, ax=ax,
               title=f"{title}\naccuracy vs {label.split(' (')[0]}")
    fig.tight_layout()
    return fig

def layer_sparsity(tables: dict, title: str = "per-layer sparsity chosen by global pruning"):
    """Each layer's `sparsity` (% zeros) per {series: metrics.layer_table}, beside its size."""
    first = next(iter(tables.values()))
    names, ys, h = [r["layer"] for r in first], list(range(len(first))), 0.8 / max(1, len(tables))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.6, 0.26 * len(names) + 1.6), sharey=True,
                                  gridspec_kw=dict(width_ratios=(2, 1)))
    for i, (series, rows) in enumerate(tables.items()):
        by_name = {r["layer"]: r["sparsity"] for r in rows}
        ax.barh([y + (i - (len(tables) - 1) / 2) * h for y in ys],
                [100 * by_name.get(k, 0.0) for k in names], h, label=series)
    ax.set_yticks(ys, names, fontsize=7)
    ax.set(xlim=(0, 100), ylim=(len(names) - 0.5, -0.5))   # the first layer on top
    ax2.barh(ys, [r["params"] for r in first], 0.6, color="tab:gray")
    ax2.set(xscale="log", xlabel="weights in the layer (log)")
    ax2.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return _finish(fig, ax, "sparsity of the layer (% zeros)", "", axis="x", fontsize=8,
                   loc="lower right")

def sensitivity_curves(curves: dict, xs: list, baseline: float | None = None,
                       plan: dict | None = None, xlabel: str = "sparsity of the layer (%)",
                       cols: int = 3, title: str = "sensitivity scan"):
    """A panel per layer of curves {layer: [accuracy after pruning only it to x, per x of xs]};
    plan {layer: x}: a red line; baseline: dashed."""
    fig, axes = _grid(len(curves), cols, 3.4, 2.5, sharey=True)
    for ax, (name, accs) in zip(axes, curves.items()):
        ax.plot([100 * x for x in xs], [100 * a for a in accs], "o-", ms=3)
        if baseline is not None:
            ax.axhline(100 * baseline, color="gray", ls="--", lw=1)
        if plan and name in plan:
            ax.axvline(100 * plan[name], color="tab:red", lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig

def sss_factors(runs: dict):
    """SSS: each conv's scaling factors |gamma|, sorted, a panel per lam; runs {lam: SSSResult}."""
    fig, axes = _grid(len(runs), len(runs), 4.2, 3.2)
    for ax, (lam, r) in zip(axes, runs.items()):
        for i, g in enumerate(r.factors):
            ax.plot(sorted(g.abs().tolist(), reverse=True), label=f"conv{i}", lw=1)
        ax.set(title=f"SSS factors, lam={lam}", xlabel="channel (sorted)", ylabel="|gamma|")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    return fig

def comparison(groups: dict, axes_spec: list, title: str = ""):
    """Lab 05's grid: a row per {title: results.aggregate rows (method, accuracy_mean/_std,
    <cost>_mean)}, a panel per (cost, label) of axes_spec: a colour and marker per method,
    ±std bars, the Pareto frontier of the means (black step line); log x when costs spread."""
    methods = list(dict.fromkeys(r["method"] for rows in groups.values() for r in rows))
    style = {m: dict(color=f"C{i % 10}", marker="osD^vP*Xh<>"[i // 10 % 11])
             for i, m in enumerate(methods)}
    ncol = len(axes_spec)
    fig, axes = plt.subplots(len(groups), ncol, figsize=(4.0 * ncol + 2.2, 3.5 * len(groups)),
                             squeeze=False)
    for r, (name, rows) in enumerate(groups.items()):
        for c, (cost, label) in enumerate(axes_spec):
            ax, key = axes[r][c], f"{cost}_mean"
            pts = [x for x in rows if x.get(key) is not None and x.get("accuracy_mean") is not None]
            for x in pts:
                std = x.get("accuracy_std")
                ax.errorbar(x[key], 100 * x["accuracy_mean"], yerr=100 * std if std else None,
                            ms=5, lw=0.8, capsize=2, ls="none", zorder=3, **style[x["method"]])
            front = [pts[i] for i in pareto_front([(x[key], x["accuracy_mean"]) for x in pts])]
            fx, fy = [x[key] for x in front], [100 * x["accuracy_mean"] for x in front]
            ax.step(fx, fy, where="post", color="black", lw=1, alpha=0.7, zorder=2)
            ax.scatter(fx, fy, s=110, facecolors="none", edgecolors="black", zorder=4)
            xs = [x[key] for x in pts]
            if xs and min(xs) > 0 and max(xs) / min(xs) > 3:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(label, fontsize=8)
            ax.set_ylabel(f"{name}\ntest accuracy (%)" if c == 0 else "", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], ls="none", label=m, **style[m]) for m in methods]
    handles.append(plt.Line2D([], [], c="black", marker="o", mfc="none", label="Pareto frontier"))
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / (4.0 * ncol + 2.2), 1))
    return fig

def csr_speedup(rows: list, title: str = "CSR vs dense kernels"):
    """CSR over dense speed-up vs the `sparsity` of every Linear layer (metrics.csr_study rows)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for b in sorted({r["batch"] for r in rows}):
        pts = sorted((r["sparsity"], r["speedup"]) for r in rows if r["batch"] == b)
        ax.plot([100 * s for s, _ in pts], [v for _, v in pts], "o-", label=f"batch {b}")
    ax.axhline(1.0, color="gray", ls="--", lw=1, label="break-even")
    ax.set_yscale("log")
    return _finish(fig, ax, "sparsity of every Linear layer (% zeros)",
                   "dense time / CSR time (> 1: sparse wins)", title)

def speedup_gap(points: list, title: str = "measured vs theoretical speed-up"):
    """Measured latency speed-up vs the MACs ratio, points [{'label', 'theory', 'measured'}]."""
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    for lab in sorted({p["label"] for p in points}):
        ps = [p for p in points if p["label"] == lab]
        ax.scatter([p["theory"] for p in ps], [p["measured"] for p in ps], s=30, label=lab)
    hi = max([p["theory"] for p in points] + [p["measured"] for p in points] + [2.0])
    ax.plot([1, hi], [1, hi], color="black", lw=1, ls="--", label="measured = theory")
    ax.set_yscale("log")
    ax.set_xscale("log")
    return _finish(fig, ax, "theoretical speed-up (dense MACs / MACs)",
                   "measured speed-up (dense latency / latency)", title, fontsize=7)
