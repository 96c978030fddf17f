"""Lab 05's comparison: every method (methods.prune_to) prunes a copy of one dense model to
each compression factor c (2: half the dense nonzero Conv/Linear weights), gets the SAME
fine-tuning Budget and is measured (results.measure): one row per (model, method, c, seed)."""
from __future__ import annotations

import hashlib
import json

from torch import nn

from . import config, methods, results, train
from .methods.registry import check_target
from .prune.masks import count_weights

VERSION = 2   # bump when a method's code changes what it would measure (old rows stop matching)

def knobs_key(knobs: dict) -> str:
    """A short hash of the methods' settings and :data:`VERSION` (timing settings excluded)."""
    keep = {k: v for k, v in sorted(knobs.items()) if k not in ("latency_s", "latency_threads")}
    return hashlib.sha256(json.dumps([VERSION, keep], default=str).encode()).hexdigest()[:12]

def check_points(points) -> list[float]:
    """Compression factors (methods.registry.check_target each), sorted, unique; not empty."""
    pts = [check_target(p) for p in points]
    if not pts:
        raise ValueError("points is empty; give compression factors such as [2, 4, 8, 16, 32]")
    return sorted(set(pts))

def _options(knobs: dict) -> dict:
    """metrics.measure options: disk size, CSR latency, the dense original timed alongside."""
    return dict(disk=True, csr=True, time_reference=True, threads=knobs.get("latency_threads", 1),
                min_run_time=knobs.get("latency_s", 0.3))

def run(cfg, data, model_name: str, dense: nn.Module, dense_key: str, names: list, points,
        budget: methods.Budget, seed: int, knobs: dict | None = None, timing: bool = True,
        progress: bool = False, log=print) -> list[dict]:
    """Run each method of `names` (labkit.methods.prune_to) on `dense` at every factor of
    `points` for one seed, fine-tune each result with `budget`, record one row per result (a
    method that reaches only its own factor, 2:4, records it once). Returns the rows.
    dense_key: identifies the dense model (train.dense_key); knobs: the methods' settings
    (read by the adapters of methods.registry), eval_before (test accuracy before fine-tuning
    too, default True) and the timer's (latency_threads 1, latency_s 0.3)."""
    points, knobs = check_points(points), dict(knobs or {})
    wrong = [n for n in names if n not in methods.applicable(dense)]
    if wrong:
        raise ValueError(f"methods {wrong} are unknown or do not apply to a "
                         f"{type(dense).__name__}; allowed: {methods.applicable(dense)}")
    ctx = methods.Context(data, budget, seed, knobs, tuple(points), progress)
    scfg = config.Config(cfg, seed=seed, data=data)
    fixed = dict(dense_key=dense_key, budget=budget.label(), knobs=knobs_key(knobs))
    rows = []
    for name in names:
        done = set()
        for c in points:
            try:
                model, info = methods.prune_to(name, dense, c, ctx)
            except methods.Unreachable as e:
                log(f"{model_name} | {name} | {c:g}x: skipped ({e})")
                continue
            if info["compression"] in done:
                continue
            done.add(info["compression"])
            reference = info.pop("reference", None)
            before = train.evaluate(model, data) if knobs.get("eval_before", True) else None
            ctx.fine_tune(model, info.get("tune_images"))
            reached = count_weights(dense)[1] / max(1, count_weights(model)[0])
            row = results.measure(scfg, model, method=name, model=model_name, reference=reference,
                                  timing=timing, options=_options(knobs), accuracy_before=before,
                                  compression_reached=reached, **fixed, **info)
            rows.append(row)
            was = f"{100 * before:.2f}% -> " if before is not None else ""
            log(f"{model_name} | {name} | {c:g}x (reached {reached:.1f}x) | seed {seed}: "
                f"accuracy {was}{100 * row['accuracy']:.2f}% after fine-tuning")
    return rows

def dense_row(cfg, data, model_name: str, dense: nn.Module, dense_key: str, seed: int,
              timing: bool = True, knobs: dict | None = None) -> dict:
    """Record (and return) the dense model's row: method 'dense', compression 1."""
    return results.measure(config.Config(cfg, seed=seed, data=data), dense, method="dense",
                           model=model_name, timing=timing, options=_options(knobs or {}),
                           dense_key=dense_key, structured=False, compression=1.0,
                           compression_reached=1.0)

def dense_model(model_name: str, data, profile: str, seed: int, progress: bool = False,
                **overrides):
    """The shared dense model (train.dense, with the owning lab's overrides) and its key."""
    model, _ = train.dense(model_name, data, profile, seed=seed, progress=progress, **overrides)
    return model, train.dense_key(model_name, data, profile, seed=seed, **overrides)

def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds of each (method, compression) of the fields lab 05 shows."""
    fields = ("accuracy", "accuracy_official", "nonzeros", "disk_best_mib", "nonzero_macs",
              "latency_best_ms", "compression_reached", "macs", "latency_cpu_ms")
    return results.aggregate(rows, by=("method", "compression"), fields=fields)

def summary(agg: list[dict]) -> list[dict]:
    """One formatted row per aggregated (method, factor), marked when on the frontier of
    (nonzeros, accuracy); columns SUMMARY."""
    front = {(r["method"], r["compression"]) for r in results.frontier(agg, "nonzeros_mean")}
    out = []
    for r in agg:
        std = r["accuracy_std"]
        out.append(dict(method=r["method"], compression=f"{r['compression']:g}x",
                        reached=f"{r['compression_reached_mean']:.1f}x",
                        accuracy=f"{100 * r['accuracy_mean']:.2f}"
                        + (f" ± {100 * std:.2f}" if std is not None else ""),
                        official=results.pct(r["accuracy_official_mean"]),
                        nonzeros=f"{r['nonzeros_mean']:,.0f}", disk=r["disk_best_mib_mean"],
                        macs=f"{r['nonzero_macs_mean']:,.0f}", latency=r["latency_best_ms_mean"],
                        frontier="yes" if (r["method"], r["compression"]) in front else ""))
    return out

SUMMARY = ["method", "compression", "reached", "accuracy", "official", "nonzeros", "disk", "macs",
           "latency", "frontier"]

def speedup_gap(rows: list[dict], dense_rows: dict) -> list[dict]:
    """Theoretical (MACs) and measured (latency) speed-up over the dense model of each
    structured row; dense_rows: {seed: the dense model's row}."""
    return [dict(model=r["model"], label=f"{r['model']}: {r['method']}", method=r["method"],
                 compression=f"{r['compression']:g}x", seed=r["seed"],
                 theory=dense_rows[r["seed"]]["macs"] / r["macs"],
                 measured=r["latency_dense_ms"] / r["latency_cpu_ms"])
            for r in rows if r["structured"] and r.get("latency_dense_ms")]
