"""Pruning schedules (one-shot, iterative, AGP) and :func:`run`, which prunes globally,
measures the drop and fine-tunes (or first rewinds to early weights: lottery ticket).
Every sparsity is absolute and global: zeros among all Conv/Linear weights after the step."""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import torch
from torch import nn

from .. import config, recipes, train
from ..config import check_fraction, check_int
from ..models import build
from ..prune.magnitude import prune_global
from ..prune.masks import enforce, global_sparsity

def oneshot(targets) -> list[float]:
    """The one-shot targets as floats, validated: each in [0, 1)."""
    targets = [targets] if isinstance(targets, (int, float)) else targets
    targets = [check_fraction("one-shot target", t) for t in targets]
    if not targets:
        raise ValueError("one-shot needs at least one target sparsity")
    return targets

def _check_rate(rate) -> float:
    """`rate` as a float in (0, 1), else TypeError or ValueError."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"rate={rate!r} must be a number in (0, 1)")
    if not 0 < rate < 1:  # also rejects NaN
        raise ValueError(f"rate={rate!r} is outside the allowed range (0, 1): the fraction of "
                         "the remaining weights pruned per round")
    return float(rate)

def _after(k: int, rate: float) -> float:
    """Global sparsity after k iterative rounds: 1 - (1 - rate)^k."""
    return 1 - (1 - rate) ** k

def iterative(rounds: int, rate: float = 0.2) -> list[float]:
    """Global sparsity after each of `rounds` rounds pruning `rate` of the remaining
    weights: 1 - (1 - rate)^k for k = 1..rounds."""
    rounds, rate = check_int("rounds", rounds, 1), _check_rate(rate)
    return [_after(k, rate) for k in range(1, rounds + 1)]

def rounds_to_reach(sparsity: float, rate: float = 0.2) -> int:
    """Fewest iterative rounds k with 1 - (1 - rate)^k >= `sparsity` (to 1e-9); closed form."""
    sparsity = check_fraction("sparsity", sparsity)
    rate, target = _check_rate(rate), sparsity - 1e-9
    if target <= 0:
        return 0
    if 1 - rate == 1:
        raise ValueError(f"rate={rate!r} is too small: 1 - rate rounds to 1, so no number of "
                         f"rounds reaches sparsity={sparsity}")
    k = max(0, math.ceil(math.log(1 - target) / math.log(1 - rate)))
    while k > 0 and _after(k - 1, rate) >= target:  # float rounding: a step or two at most
        k -= 1
    while _after(k, rate) < target:
        k += 1
    return k

def agp(final: float, steps: int, initial: float = 0.0) -> list[float]:
    """Zhu & Gupta's gradual pruning: s_t = final + (initial - final)(1 - t/steps)^3 for
    t = 1..steps (big steps first); the last is `final`."""
    final = check_fraction("final sparsity", final)
    initial = check_fraction("initial sparsity", initial)
    steps = check_int("steps", steps, 1)
    if initial > final:
        raise ValueError(f"initial={initial} must not exceed final={final}")
    return [final + (initial - final) * (1 - t / steps) ** 3 for t in range(1, steps + 1)]

def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's state (masks left out), to rewind to later."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if not k.endswith("weight_mask")}

@torch.no_grad()
def rewind(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Lottery-ticket rewind: every parameter and buffer back to `state` (a :func:`snapshot`),
    masks kept, pruned weights zeroed again. All of the state or none of it."""
    if not isinstance(state, dict):
        raise TypeError(f"rewind state must be a dict from snapshot(), not {type(state).__name__}")
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("weight_mask")}
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(f"rewind state does not fit this model: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise ValueError(f"rewind state {k!r} has shape {tuple(state[k].shape)}, "
                             f"model has {tuple(v.shape)}")
    for k, v in own.items():
        v.copy_(state[k].to(v.device))
    enforce(model)

def early_weights(model_name: str, data, profile: str, *, seed: int = 0, rewind_epochs: int = 1,
                  **overrides) -> dict[str, torch.Tensor]:
    """A :func:`snapshot` after the first `rewind_epochs` epochs of train.dense's run (same
    recipe and `overrides`, seed, data order); lr: the dense warm-up, then constant."""
    epochs = check_int("rewind_epochs", rewind_epochs, 1)
    hp = recipes.dense(model_name, profile, **overrides)
    width, total = hp.pop("width"), hp.pop("epochs")
    if epochs > total:
        raise ValueError(f"rewind_epochs={epochs} exceeds the dense run's {total} epochs")
    steps = len(data.loader("train", hp["batch_size"], drop_last=True))
    warm_steps = max(1, int(hp.get("warmup", 0.1) * total * steps))  # the dense run's warm-up
    hp["warmup"] = (warm_steps + 0.5) / (epochs * steps)
    hp["schedule"] = "constant"
    config.seed_everything(seed)
    model = build(model_name, width=width)
    train.fit(model, data, epochs=epochs, seed=seed, progress=False, desc="rewind point", **hp)
    return snapshot(model)

def run(model: nn.Module, data, sparsities: list, *, epochs: int, lr: float, batch_size: int,
        evaluate: Callable[[nn.Module], float], rewind_to: dict | None = None,
        on_step: Callable[[nn.Module, dict], None] | None = None, seed: int = 0,
        acc_before: float | None = None, desc: str = "schedule", **fit_kw) -> list[dict]:
    """Prune `model` in place to each global sparsity of `sparsities` (non-decreasing), each
    followed by `epochs` of train.fine_tune. rewind_to: a :func:`snapshot` the survivors are
    reset to after each prune; on_step(model, row): after each step; acc_before: accuracy
    before the first step (None: evaluate(model)). One row per step."""
    sparsities = [check_fraction("sparsity", s) for s in sparsities]
    if any(b < a for a, b in zip(sparsities, sparsities[1:])):
        raise ValueError(f"sparsities {sparsities} must be non-decreasing (masks only grow)")
    check_int("epochs", epochs, 0)
    rows, total, acc_before = [], 0, evaluate(model) if acc_before is None else acc_before
    for i, s in enumerate(sparsities):
        t0 = time.perf_counter()
        prune_global(model, s)
        acc_pruned = evaluate(model)
        if rewind_to is not None:
            rewind(model, rewind_to)
        sec_epoch = ips = float("nan")
        if epochs > 0:
            # seed + epochs so far: every epoch of the schedule its own shuffle and crops
            h = train.fine_tune(model, data, epochs=epochs, lr=lr, batch_size=batch_size,
                                seed=seed + total, desc=f"{desc} {s:.3f}", **fit_kw)
            sec_epoch, ips = h.seconds_per_epoch(), h.images_per_s()
        total += epochs
        row = dict(step=i + 1, sparsity=s, global_sparsity=global_sparsity(model),
                   acc_before=acc_before, acc_pruned=acc_pruned, drop=acc_before - acc_pruned,
                   acc_finetuned=evaluate(model), epochs=epochs, total_epochs=total,
                   rewound=rewind_to is not None, seconds=time.perf_counter() - t0,
                   seconds_per_epoch=sec_epoch, images_per_s=ips)
        rows.append(row)
        if on_step is not None:
            on_step(model, row)
        acc_before = row["acc_finetuned"]
    return rows

def oneshot_runs(model: nn.Module, data, targets, **kw) -> list[dict]:
    """One-shot: per target, a copy of `model` pruned straight to it and fine-tuned (keywords
    as :func:`run`'s). Rows as run's, the pruned copy in row['model']."""
    rows, desc = [], kw.pop("desc", "one-shot")
    for t in oneshot(targets):
        m = copy.deepcopy(model)
        row = run(m, data, [t], desc=desc, **kw)[0]
        row["model"] = m
        rows.append(row)
    return rows
