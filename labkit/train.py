"""Training: fit (fused SGD, channels_last, bf16 autocast, hooks), evaluate, cached dense models."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import config, recipes
from .data import Data
from .io import atomic_save, load_verified
from .models import build, check_input, has_conv, to_channels_last
from .prune.masks import enforce, prunable

CACHE_VERSION = 4      # bump when training code changes what a cached model would be
NAN_CHECK_EVERY = 50   # steps between (syncing) non-finite loss checks
GROUP_KEYS = ("lr_scale", "momentum", "weight_decay")   # what a param_groups entry may set
SPEED_ONLY = ("compile",)   # fit settings that change speed, not the trained model

class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""

class EMA:
    """After-step hook averaging the parameters (not the buffers): update t = 1, 2, ... does
    avg <- d * avg + (1 - d) * p, d = min(decay, (1 + t) / (10 + t))."""
    def __init__(self, model: nn.Module, decay: float):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
            raise ValueError(f"ema decay={decay!r} must be a number strictly between 0 and 1")
        self.decay, self.updates, self.params = float(decay), 0, list(model.parameters())
        self.avg = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def __call__(self, model: nn.Module = None, step: int = None) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_mul_(self.avg, d)
        torch._foreach_add_(self.avg, self.params, alpha=1 - d)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the averaged and the live parameters (a second swap undoes the first)."""
        live = [p.detach().clone() for p in self.params]
        torch._foreach_copy_(self.params, self.avg)
        self.avg = live

@dataclass
class History:
    """Per-epoch dicts of one fit: epoch, train_loss, train_acc, val_acc, lr, seconds,
    images_per_s. The medians leave out the first epoch (warm-up) when they can."""
    epochs: list = field(default_factory=list)

    @property
    def best_val(self) -> float:
        """The highest val_acc (nan without epochs)."""
        return max((e["val_acc"] for e in self.epochs), default=float("nan"))

    def _median(self, key: str) -> float:
        t = sorted(e[key] for e in (self.epochs[1:] or self.epochs))
        return t[len(t) // 2] if t else float("nan")

    def seconds_per_epoch(self) -> float:
        return self._median("seconds")

    def images_per_s(self) -> float:
        return self._median("images_per_s")

    def timing(self) -> str:
        """'x.xx s/epoch, N images/s' for the notebook's speed line."""
        return f"{self.seconds_per_epoch():.2f} s/epoch, {self.images_per_s():,.0f} images/s"

def _autocast(device: torch.device):
    dtype = config.autocast_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

def _prepare(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device)
    return to_channels_last(model) if channels_last and has_conv(model) else model

@torch.no_grad()
def predict(model: nn.Module, data: Data, split: str = "test", batch_size: int = 1000,
            tta: bool = False) -> torch.Tensor:
    """(N,) int64 classes `model` (eval mode) gives the N images of one split; `tta`: the
    argmax of the mean softmax (B, K) of each image and its horizontal flip."""
    conv = next((m.weight for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    nhwc = conv is not None and conv.is_contiguous(memory_format=torch.channels_last) \
        and not conv.is_contiguous()
    was_training, out = model.training, []
    model.eval()
    for x, _ in data.loader(split, batch_size, channels_last=nhwc):
        with _autocast(x.device):
            scores = model(x) if not tta else (
                F.softmax(model(x).float(), 1) + F.softmax(model(x.flip(-1)).float(), 1)) / 2
        out.append(scores.argmax(1))
    model.train(was_training)
    return torch.cat(out)

@torch.no_grad()
def evaluate(model: nn.Module, data: Data, split: str = "test", batch_size: int = 1000,
             tta: bool = False) -> float:
    """Top-1 accuracy (a fraction) of `model` on one split of `data`; `tta`: see predict."""
    labels = getattr(data, split).y
    return (predict(model, data, split, batch_size, tta) == labels).sum().item() / len(labels)

def evaluator(data: Data, split: str = "val", batch_size: int = 250) -> Callable:
    """A function model -> accuracy (fp32, eval mode) on the whole `split` of `data`, whose
    normalised batches are built once; for a part, pass data.subset(n, split, seed=None)."""
    batches, n = list(data.loader(split, batch_size)), len(getattr(data, split))
    @torch.no_grad()
    def accuracy(model: nn.Module) -> float:
        was = model.training
        model.eval()
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
        model.train(was)
        return correct / n
    return accuracy

def official(model: nn.Module, data: Data) -> float | None:
    """Accuracy on data.official (see Data.holdout_as_test); None without one."""
    return evaluate(model, data, "official") if data.official is not None else None

def lr_at(step: int, total: int, lr: float, warmup: float, schedule: str) -> float:
    """Learning rate at `step` of `total`: linear warm-up over the first `warmup`
    fraction, then 'linear' or 'cosine' decay to zero, or 'constant'."""
    w = max(1, int(warmup * total)) if warmup > 0 else 0
    if step < w:
        return lr * (step + 1) / w
    if schedule == "constant":
        return lr
    t = (step - w) / max(1, total - w)
    return lr * (1 - t) if schedule == "linear" else lr * 0.5 * (1 + math.cos(math.pi * t))

def sgd(model: nn.Module, *, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4,
        nesterov: bool = True, param_groups=None) -> torch.optim.SGD:
    """fit's optimiser: fused SGD, weight decay on weights (ndim > 1) only, Nesterov. param_groups:
    None or dicts {"params": some of the model's parameters, optional "lr_scale" (> 0, default 1),
    "momentum" (>= 0), "weight_decay" (>= 0; default `weight_decay` if all have ndim > 1, else
    0)}; the other parameters form two default groups. A group's lr is lr * its lr_scale."""
    if param_groups is not None and not isinstance(param_groups, (list, tuple)):
        raise ValueError(f"param_groups must be a list of dicts, got {type(param_groups).__name__}")
    owned, special, taken = {id(p) for p in model.parameters()}, [], set()
    for i, group in enumerate(param_groups or ()):
        where = f"param_groups[{i}]"
        if not isinstance(group, dict) or "params" not in group:
            raise ValueError(f"{where} (a {type(group).__name__}) must be a dict with 'params'")
        extra = sorted(set(group) - {"params", *GROUP_KEYS})
        if extra:
            raise ValueError(f"{where} has unknown keys {extra}; allowed: params, "
                             + ", ".join(GROUP_KEYS))
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        ids = {id(p) for p in params}
        if not params or len(ids) < len(params) or not ids <= owned:
            raise ValueError(f"{where}['params'] must be distinct parameters of the model "
                             f"(got {len(params)}, {len(ids & owned)} distinct of it)")
        for key in GROUP_KEYS:
            config.check_positive(f"{where}['{key}']", group.get(key, 1.0), key != "lr_scale")
        if ids & taken:
            raise ValueError(f"{where} repeats a parameter of an earlier group")
        taken |= ids
        g = {**group, "params": params}
        g.setdefault("weight_decay", weight_decay if all(p.ndim > 1 for p in params) else 0.0)
        g.setdefault("momentum", momentum)
        g["nesterov"] = nesterov and g["momentum"] > 0
        special.append(g)
    rest = [p for p in model.parameters() if id(p) not in taken]
    groups = [{"params": [p for p in rest if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in rest if p.ndim <= 1], "weight_decay": 0.0}] + special
    for g in groups:
        g.setdefault("lr_scale", 1.0)
        g["lr"] = lr * g["lr_scale"]
    fused = True if next(model.parameters()).device.type in ("cpu", "cuda") else None
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                           fused=fused)

def fit(model: nn.Module, data: Data, *, epochs: int, lr: float, batch_size: int,
        momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = True,
        warmup: float = 0.1, schedule: str = "linear", label_smoothing: float = 0.0,
        augment: bool = False, seed: int = 0, progress: bool = True, compile: bool = False,
        channels_last: bool = True, desc: str = "train", after_step=None,
        ema: float | None = None, param_groups=None, validate: bool = True) -> History:
    """Train `model` in place on data.train (epoch e shuffled and augmented from seed + e),
    validating on data.val each epoch (validate=False: val_acc nan). after_step: hooks
    hook(model, step) run without grad after each optimiser step (0-based, as lr_at got it);
    then the masks are re-applied (pruned weights stay zero) and ema (a decay in (0, 1)) updates
    the average: val_acc is of it, and it is left in the model (with the last BN statistics).
    param_groups: see sgd (lr: lr_at(...) * lr_scale). Raises TrainingDiverged on a NaN loss."""
    config.check_int("epochs", epochs, 0)
    config.check_choice("schedule", schedule, ("linear", "cosine", "constant"))
    config.check_positive("lr", lr)
    device = data.train.x.device
    model = _prepare(model, device, channels_last)
    check_input(model, data.shape)
    step_fn = torch.compile(model) if compile else model
    opt = sgd(model, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
              param_groups=param_groups)
    hooks = [after_step] if callable(after_step) else list(after_step or ())
    bad = [h for h in hooks if not callable(h)]
    if bad:
        raise ValueError(f"after_step={bad!r}: each must be a callable hook(model, step)")
    masked = [m for m in prunable(model).values() if hasattr(m, "weight_mask")]
    weights, masks = [m.weight for m in masked], [m.weight_mask.to(m.weight.dtype) for m in masked]
    if masked:   # re-applied after each step: pruned weights stay exactly zero
        hooks.append(lambda m, step: torch._foreach_mul_(weights, masks))
    averaged = None
    if ema is not None:
        enforce(model)
        averaged = EMA(model, ema)
        hooks.append(averaged)
    loader = data.loader("train", batch_size, shuffle=True, augment=augment, drop_last=True,
                         seed=seed, channels_last=channels_last and has_conv(model))
    total, step, history = epochs * len(loader), 0, History()
    bar = tqdm(range(epochs), desc=desc, disable=not (progress and config.progress()),
               file=sys.stdout, mininterval=2)
    for epoch in bar:
        model.train()
        t0, losses = time.perf_counter(), torch.zeros(len(loader), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for i, (x, y) in enumerate(loader):
            now = lr_at(step, total, lr, warmup, schedule)
            for g in opt.param_groups:
                g["lr"] = now * g["lr_scale"]
            with _autocast(device):
                out = step_fn(x)
                loss = F.cross_entropy(out.float(), y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for hook in hooks:
                    hook(model, step)
            losses[i] = loss.detach()
            correct += (out.argmax(1) == y).sum()
            step += 1
            if (i + 1) % NAN_CHECK_EVERY == 0 or i + 1 == len(loader):
                nonfinite = torch.nonzero(~torch.isfinite(losses[:i + 1]))   # a host sync
                if len(nonfinite):
                    k = int(nonfinite[0])
                    raise TrainingDiverged(
                        f"loss became {losses[k].item()} at epoch {epoch + 1}, step {k + 1}: "
                        "lower the learning rate or check the data")
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds, n_img = time.perf_counter() - t0, len(loader) * batch_size
        if averaged and validate:
            averaged.swap()   # validate the average
        val_acc = evaluate(model, data, "val") if validate else float("nan")
        if averaged and validate:
            averaged.swap()
        record = dict(epoch=epoch + 1, train_loss=losses.mean().item(),
                      train_acc=correct.item() / max(1, n_img), val_acc=val_acc, lr=lr,
                      seconds=seconds, images_per_s=n_img / seconds if seconds > 0 else math.nan)
        history.epochs.append(record)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{val_acc:.4f}",
                        ips=f"{record['images_per_s']:,.0f}")
    if averaged:
        averaged.swap()
        enforce(model)
    return history

def fine_tune(model: nn.Module, data: Data, *, epochs: int, lr: float, batch_size: int,
              **kw) -> History:
    """fit() with a pruned model: masks are kept, warm-up skipped, cosine decay."""
    kw = {"warmup": 0.0, "schedule": "cosine", "desc": "fine-tune", **kw}
    history = fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, **kw)
    enforce(model)
    return history

def cache_key(model_name: str, width: float, data: Data, hp: dict, seed: int) -> str:
    """Hash of everything that determines a trained dense model; `hp`: fit's settings, less
    SPEED_ONLY (so compile=True or False finds the model trained without saying it)."""
    hp = {k: v for k, v in hp.items() if k not in SPEED_ONLY}
    blob = json.dumps(dict(model=model_name, width=width, data=data.name, data_hash=data.hash,
                           n_train=len(data.train), hp=hp, seed=seed, version=CACHE_VERSION,
                           device=data.train.x.device.type), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

def _recipe(model_name: str, profile: str, **overrides) -> tuple[float, dict]:
    """(width, fit's settings) of the dense recipe with non-None `overrides`."""
    hp = recipes.dense(model_name, profile, **overrides)
    return hp.pop("width"), hp

def dense_key(model_name: str, data: Data, profile: str, *, seed: int = 0, **overrides) -> str:
    """The cache key of the dense model that :func:`dense` gives for the same arguments."""
    width, hp = _recipe(model_name, profile, **overrides)
    return cache_key(model_name, width, data, hp, seed)

def dense(model_name: str, data: Data, profile: str, *, seed: int = 0, progress: bool = True,
          use_cache: bool = True, **overrides) -> tuple[nn.Module, History]:
    """A trained dense model for `profile` (recipes.dense with non-None `overrides`): from the
    cache when the same model, recipe, data and seed were trained, else trained and cached."""
    width, hp = _recipe(model_name, profile, **overrides)
    print(f"dense {model_name} recipe ({profile}): width={width}, "
          + ", ".join(f"{k}={v}" for k, v in hp.items()))
    key = cache_key(model_name, width, data, hp, seed)
    path = config.cache_root() / "models" / f"{model_name}-{key}.pt"
    config.seed_everything(seed)
    model = build(model_name, width=width)
    blob = load_verified(path) if use_cache else None
    if blob is not None:
        model.load_state_dict(blob["state_dict"])
        history = History(**blob["history"])
        print(f"dense {model_name}: loaded from cache {path.name} "
              f"(trained {len(history.epochs)} epochs)")
        return _prepare(model, data.train.x.device, True), history
    history = fit(model, data, seed=seed, progress=progress, desc=f"dense {model_name}", **hp)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save({"state_dict": state, "history": asdict(history),
                 "meta": dict(model=model_name, key=key)}, path)
    return model, history
