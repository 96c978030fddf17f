"""labkit: the helper library of the pruning labs. ``import labkit as lk``.

Modules, lowest first (data flows one way):
config -> io -> data -> models -> train -> prune -> sensitivity -> metrics
-> results -> plots; report (the papermill runner) is used only by the CLI.
"""
__version__ = "0.1.0"

from . import (  # noqa: E402
    config, data, io, methods, metrics, models, plots, prune, recipes, results, sensitivity, sparse,
    train,
)
from .config import Config  # noqa: E402


def configure(profile: str | None, hparams: dict, *, lab: str, dataset: str, seed=None,
              device=None, data_folder=None, model: str | None = None, quiet: bool = False,
              **overrides) -> Config:
    """Set up one notebook run: settings, seed, device, and data; print the stamp.

    profile: 'smoke' | 'cpu' | 'full', or None: $LABKIT_PROFILE, else 'cpu';
    hparams: {profile: {setting: value}};
    dataset: 'mnist' or 'cifar10' (smoke uses the synthetic stand-in);
    data_folder: an ImageFolder tree to use as CIFAR-10 (else $LABKIT_CIFAR10_FOLDER);
    model: the dense model the lab starts from: its recipe's data split
           (recipes.data_split) is loaded, and hparams may not set one;
    overrides: settings to replace, None = keep the profile's value.
    The returned Config holds the loaded Data as ``cfg.data`` (on cfg.device).
    """
    profile = config.default_profile() if profile is None else profile
    cfg = config.make(profile, hparams, lab=lab, dataset=dataset, seed=seed, device=device,
                      **overrides)
    split = dict(val_size=cfg.get("val_size"), train_subset=cfg.get("train_subset"),
                 holdout=cfg.get("holdout"))
    if model is not None:
        clash = [k for k in split if k in cfg]
        if clash:
            raise ValueError(f"settings {clash} belong to the {model!r} recipe (recipes.DATA), "
                             f"not to lab {lab}")
        split = recipes.data_split(model, cfg.profile)
    d = data.load(cfg.dataset, folder=data_folder, device=cfg.device, **split).holdout_as_test()
    if not quiet:
        print(config.stamp(cfg, d.source, d.hash))
        print(d.describe())
        for note in d.notes:
            print("NOTE:", note)
    cfg.data = d
    return cfg
