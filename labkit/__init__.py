"""labkit, the helper library of the pruning labs: ``import labkit as lk``; configure().

Levels (README's Architecture says what each module holds); a module imports only from its own
level or below (tests/test_layers.py):
  0 config, io, recipes   1 data, models, guard   2 prune/   3 metrics, sparse, sensitivity
  4 train   5 methods/   6 results, plots, compare   7 report, __init__
"""
from . import (compare, config, data, io, methods, metrics, models, plots, prune, recipes,
               results, sensitivity, sparse, train)
from .config import Config, __version__

def configure(profile: str | None, hparams: dict, *, lab: str, dataset: str, seed=None,
              device=None, data_folder=None, model: str | None = None, quiet: bool = False,
              **overrides) -> Config:
    """Set up one notebook run: settings, seed, device and data (``cfg.data``, on cfg.device);
    print the stamp. profile: None means $LABKIT_PROFILE, else 'cpu'; dataset: 'mnist' or
    'cifar10'; data_folder: an ImageFolder tree to use as CIFAR-10; model: the dense model the
    lab starts from (its recipes.data_split is loaded; hparams may not set one)."""
    profile = config.default_profile() if profile is None else profile
    cfg = config.make(profile, hparams, lab=lab, dataset=dataset, seed=seed, device=device,
                      **overrides)
    split = {k: cfg.get(k) for k in ("val_size", "train_subset", "holdout")}
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
