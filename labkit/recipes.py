"""Dense training recipes {model: {profile: settings}} and the data split each dense model trains
on (DATA), shared by every lab that starts from it, so its trained model is cached once
(labkit.train.dense). A recipe holds ``width`` plus keyword arguments of labkit.train.fit."""
from __future__ import annotations

from .config import PROFILES, check_choice

_MLP = dict(width=1.0, epochs=10, batch_size=128, lr=0.05)
_SMOKE = dict(width=0.0625, epochs=2, batch_size=32, lr=0.05, augment=True)
_CPU = dict(batch_size=256, lr=0.2, augment=True, label_smoothing=0.2)   # + width and epochs
_FULL = dict(width=1.0, epochs=30, batch_size=512, lr=0.4, augment=True, label_smoothing=0.2)
DENSE = {
    "mlp": {"smoke": dict(_MLP, width=0.25, epochs=4), "cpu": dict(_MLP), "full": dict(_MLP)},
    # trained in lab 02, reused by labs 04 and 05; cpu: the recipe of benchmarks/README.md
    # (90.05 % on 10,000 held-out images); full: the study's width, sized for one GPU
    "vgg": {"smoke": dict(_SMOKE), "cpu": dict(width=0.25, epochs=24, **_CPU), "full": dict(_FULL)},
    # owned by lab 03; the study trained about 40 epochs at width 1 (93.21 %)
    "resnet18": {"smoke": dict(_SMOKE), "cpu": dict(width=0.25, epochs=40, **_CPU),
                 "full": dict(_FULL)},
}
FIT_OPTIONS = ("augment", "weight_decay", "momentum", "label_smoothing", "warmup", "schedule",
               "compile", "nesterov")   # fit settings a recipe may leave out but accept
_SPLIT = dict(train_subset=None, val_size=5000, holdout=10000)   # CIFAR cpu and full
# the data each dense model trains on, per profile (labkit.configure(model=...) loads it)
DATA = {
    "mlp": {p: dict(train_subset=None, val_size=None) for p in PROFILES},
    "vgg": {"smoke": dict(train_subset=768, val_size=200, holdout=500),
            "cpu": dict(_SPLIT), "full": dict(_SPLIT)},
    "resnet18": {"smoke": dict(train_subset=256, val_size=64, holdout=500),
                 "cpu": dict(_SPLIT), "full": dict(_SPLIT)},
}

def data_split(model: str, profile: str) -> dict:
    """The load() arguments {'train_subset', 'val_size'[, 'holdout']} of `model`'s dense
    recipe for `profile` (None: load's default)."""
    check_choice("model", model, DATA)
    check_choice("profile", profile, PROFILES)
    return dict(DATA[model][profile])

def dense(model: str, profile: str, **overrides) -> dict:
    """The recipe of `model` for `profile`, with non-None `overrides` applied."""
    check_choice("model", model, DENSE)
    check_choice("profile", profile, PROFILES)
    recipe = dict(DENSE[model][profile])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = [k for k in overrides if k not in recipe and k not in FIT_OPTIONS]
    if unknown:
        raise ValueError(f"unknown dense setting {unknown[0]!r} for {model}; "
                         f"recipe has {sorted(recipe)}")
    return {**recipe, **overrides}
