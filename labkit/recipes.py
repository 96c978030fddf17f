"""Dense training recipes: {model: {profile: settings}}, shared by every lab.

Labs that start from the same dense model (VGG in labs 02, 04, 05; the MLP in
01 and 05) use the same recipe and the same data split (DATA), so the trained
model is cached once (labkit.train.dense) and reused. A recipe holds ``width``
plus the keyword arguments of labkit.train.fit.
"""
from __future__ import annotations

from .config import PROFILES

DENSE = {
    "mlp": {
        "smoke": dict(width=0.25, epochs=4, batch_size=128, lr=0.05),
        "cpu": dict(width=1.0, epochs=10, batch_size=128, lr=0.05),
        "full": dict(width=1.0, epochs=10, batch_size=128, lr=0.05),
    },
    # vgg: trained in lab 02, reused by labs 04 and 05 (one cached model: the width, epochs
    # and data split live here, not in the labs). cpu: width 1/4, 24 epochs, the recipe of
    # benchmarks/README.md (90.05 % on 10,000 held-out images); full: the study's width, sized
    # for one GPU (benchmarks/gpu.sh).
    "vgg": {
        "smoke": dict(width=0.0625, epochs=2, batch_size=32, lr=0.05, augment=True),
        "cpu": dict(width=0.25, epochs=24, batch_size=256, lr=0.2, augment=True,
                    label_smoothing=0.2),
        "full": dict(width=1.0, epochs=30, batch_size=512, lr=0.4, augment=True,
                     label_smoothing=0.2),
    },
    # resnet18: owned by lab 03. full = the study's width (it trained about 40 epochs, 93.21%),
    # 30 epochs to fit one GPU's budget; cpu = width 1/4, 40 epochs (16 gave 87.77 %).
    "resnet18": {
        "smoke": dict(width=0.0625, epochs=2, batch_size=32, lr=0.05, augment=True),
        "cpu": dict(width=0.25, epochs=40, batch_size=256, lr=0.2, augment=True,
                    label_smoothing=0.2),
        "full": dict(width=1.0, epochs=30, batch_size=512, lr=0.4, augment=True,
                     label_smoothing=0.2),
    },
}


# The data each dense model trains on, per profile (labkit.configure(model=...) loads it):
# every lab that starts from one dense model sees the same split, so they share its cache.
DATA = {
    "mlp": {p: dict(train_subset=None, val_size=None) for p in PROFILES},
    "vgg": {
        "smoke": dict(train_subset=768, val_size=200, holdout=500),
        "cpu": dict(train_subset=None, val_size=5000, holdout=10000),
        "full": dict(train_subset=None, val_size=5000, holdout=10000),
    },
    "resnet18": {
        "smoke": dict(train_subset=256, val_size=64, holdout=500),
        "cpu": dict(train_subset=None, val_size=5000, holdout=10000),
        "full": dict(train_subset=None, val_size=5000, holdout=10000),
    },
}


def data_split(model: str, profile: str) -> dict:
    """{'train_subset', 'val_size'} that `model`'s dense recipe trains on for `profile`
    (None: data.load's default)."""
    if model not in DATA:
        raise ValueError(f"no data split for model={model!r}; have {sorted(DATA)}")
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {PROFILES}")
    return dict(DATA[model][profile])


def dense(model: str, profile: str, **overrides) -> dict:
    """The recipe of `model` for `profile`, with non-None `overrides` applied."""
    if model not in DENSE:
        raise ValueError(f"no dense recipe for model={model!r}; have {sorted(DENSE)}")
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {PROFILES}")
    recipe = dict(DENSE[model][profile])
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in recipe and k not in ("augment", "weight_decay", "momentum", "label_smoothing",
                                         "warmup", "schedule", "compile", "nesterov"):
            raise ValueError(f"unknown dense setting {k!r} for {model}; "
                             f"recipe has {sorted(recipe)}")
        recipe[k] = v
    return recipe
