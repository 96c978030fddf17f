"""labkit: the helper library of the pruning labs. ``import labkit as lk``.

Modules, lowest first (data flows one way):
config -> io -> data -> models -> train -> prune -> sensitivity -> metrics
-> results -> plots; report (the papermill runner) is used only by the CLI.
"""
__version__ = "0.1.0"

from . import config, data, io, metrics, models, plots, prune, recipes, results, sensitivity, sparse, train  # noqa: E402
from .config import Config  # noqa: E402


def configure(profile: str | None, hparams: dict, *, lab: str, dataset: str, seed=None, device=None,
              data_folder=None, quiet: bool = False, **overrides) -> Config:
    """Set up one notebook run: settings, seed, device, and data; print the stamp.

    profile: 'smoke' | 'cpu' | 'full', or None: $LABKIT_PROFILE, else 'cpu';
    hparams: {profile: {setting: value}};
    dataset: 'mnist' or 'cifar10' (smoke uses the synthetic stand-in);
    data_folder: an ImageFolder tree to use as CIFAR-10 (else $LABKIT_CIFAR10_FOLDER);
    overrides: settings to replace, None = keep the profile's value.
    The returned Config holds the loaded Data as ``cfg.data`` (on cfg.device).
    """
    profile = config.default_profile() if profile is None else profile
    cfg = config.make(profile, hparams, lab=lab, dataset=dataset, seed=seed, device=device, **overrides)
    d = data.load(cfg.dataset, folder=data_folder, val_size=cfg.get("val_size"),
                  train_subset=cfg.get("train_subset"), device=cfg.device)
    if not quiet:
        print(config.stamp(cfg, d.source, d.hash))
        print(d.describe())
        for note in d.notes:
            print("NOTE:", note)
    cfg.data = d
    return cfg
