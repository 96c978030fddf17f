"""Profiles, paths, device choice, seeding and the environment stamp.

The lowest module of labkit: it imports nothing else from the package.

A *profile* says what kind of run this is:

| profile | data                               | scale                          |
|---------|------------------------------------|--------------------------------|
| smoke   | synthetic stand-ins, no files      | tiny widths, 1 epoch, few pts  |
| cpu     | real MNIST / CIFAR-10              | laptop-sized (minutes)         |
| full    | real MNIST / CIFAR-10              | original sizes (one GPU)       |

Each notebook keeps its own hyper-parameters as one dict per profile (airbench
style) and hands it to :func:`make`, which merges the overrides and returns a
:class:`Config`.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import random
import subprocess
import sys
from pathlib import Path

import torch

PROFILES = ("smoke", "cpu", "full")
# Real dataset name -> the synthetic stand-in used by the smoke profile.
SYNTHETIC = {"mnist": "synthetic-mnist", "cifar10": "synthetic-cifar10"}

_PKG = Path(__file__).resolve().parent
# The project root when labkit runs from its checkout (editable install);
# otherwise the working directory.
ROOT = _PKG.parent if (_PKG.parent / "pyproject.toml").exists() else Path.cwd()


def _path_from_env(var: str, default: Path) -> Path:
    """An absolute path from environment variable `var`; relative values are
    taken relative to the project root (so notebooks run from any folder)."""
    value = os.environ.get(var)
    if not value:
        return default
    p = Path(value).expanduser()
    return (p if p.is_absolute() else ROOT / p).resolve()


def data_root() -> Path:
    """Where datasets live: ``$LABKIT_DATA`` or ``<root>/data`` (torchvision layout)."""
    return _path_from_env("LABKIT_DATA", ROOT / "data")


def cache_root() -> Path:
    """Where trained dense models and decoded image trees are cached."""
    return _path_from_env("LABKIT_CACHE", ROOT / ".cache" / "labkit")


def reports_root() -> Path:
    """Where reports and results.jsonl are written: ``$LABKIT_REPORTS``, else
    ``<root>/reports/interactive`` (a notebook run by hand never writes over the
    committed report; ``python -m labkit report`` sets ``<root>/reports``)."""
    return _path_from_env("LABKIT_REPORTS", ROOT / "reports" / "interactive")


def cifar10_folder() -> Path | None:
    """An ImageFolder tree (``train/``, ``test/``) to use as CIFAR-10, from
    ``$LABKIT_CIFAR10_FOLDER``; None when unset."""
    value = os.environ.get("LABKIT_CIFAR10_FOLDER")
    return _path_from_env("LABKIT_CIFAR10_FOLDER", ROOT) if value else None


def default_profile() -> str:
    """The profile of a notebook run by hand: ``$LABKIT_PROFILE``, else 'cpu'
    (real data). Papermill, nbval and the tests inject their own."""
    profile = os.environ.get("LABKIT_PROFILE") or "cpu"
    if profile not in PROFILES:
        raise ValueError(f"LABKIT_PROFILE={profile!r} is not one of {PROFILES}")
    return profile


def progress() -> bool:
    """Whether progress bars are shown: off when $LABKIT_PROGRESS is '0'
    (the report runner sets it, so executed reports stay readable)."""
    return os.environ.get("LABKIT_PROGRESS", "1") != "0"


def choose_device(name: str | None = None) -> torch.device:
    """The training device: `name` if given, else cuda > mps > cpu."""
    if name is not None:
        allowed = ("cpu", "cuda", "mps")
        if not isinstance(name, str) or name.split(":")[0] not in allowed:
            raise ValueError(f"device={name!r} is not one of {allowed}")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """True when this CPU reports bf16 arithmetic in hardware (x86 flags
    avx512_bf16 or amx_bf16, Arm's bf16), read from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set(" ".join(l.split(":", 1)[1] for l in text.splitlines()
                         if l.startswith(("flags", "Features")) and ":" in l).split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype fit and evaluate autocast to on `device`, or None for fp32.

    bf16 on CUDA; on a CPU only where it has native bf16 (there it is faster
    than fp32). Without it oneDNN emulates bf16, which is much slower than
    fp32, so such CPUs train in fp32 (step times per dtype: benchmarks/steps.py,
    see benchmarks/README.md).
    $LABKIT_PRECISION=fp32 forces fp32 everywhere."""
    precision = os.environ.get("LABKIT_PRECISION") or "auto"
    if precision not in ("auto", "fp32"):
        raise ValueError(f"LABKIT_PRECISION={precision!r} is not one of ('auto', 'fp32')")
    if precision == "fp32":
        return None
    if device.type == "cuda" or (device.type == "cpu" and native_bf16()):
        return torch.bfloat16
    return None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (when present) and torch on every device."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


class Config(dict):
    """A dict of settings with attribute access (``cfg.epochs``).

    Always holds: profile, lab, seed, device (torch.device), dataset, plus the
    lab's hyper-parameters for this profile.
    """

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"config has no setting {key!r}; it has {sorted(self)}") from None

    def __setattr__(self, key, value):
        self[key] = value

    @property
    def synthetic(self) -> bool:
        """True when the data is a synthetic stand-in."""
        return str(self["dataset"]).startswith("synthetic-")

    def hash(self) -> str:
        """A short hash of the JSON-able settings (used in cache keys and result rows)."""
        items = {k: v for k, v in self.items() if k not in ("data", "device")}
        blob = json.dumps(items, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def make(profile: str, hparams: dict, *, lab: str, dataset: str, seed: int | None = None,
         device: str | None = None, **overrides) -> Config:
    """Build the Config of one notebook run.

    profile:  'smoke', 'cpu' or 'full'.
    hparams:  {profile: {setting: value}}, the notebook's hyper-parameters.
    dataset:  the real dataset ('mnist', 'cifar10'); smoke swaps in its
              synthetic stand-in unless `dataset` already names one.
    overrides: settings that replace the profile's values; None means "keep".
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {PROFILES}")
    if not isinstance(hparams, dict) or profile not in hparams:
        raise ValueError(f"hparams must map each profile to a dict; missing {profile!r}")
    settings = dict(hparams[profile])
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in settings:
            raise ValueError(f"unknown setting {key!r}; this lab has {sorted(settings)}")
        settings[key] = value
    if profile == "smoke" and dataset in SYNTHETIC:
        dataset = SYNTHETIC[dataset]
    seed = 0 if seed is None else int(seed)
    cfg = Config(profile=profile, lab=str(lab), seed=seed, dataset=dataset, **settings)
    cfg["device"] = choose_device(device)
    seed_everything(seed)
    return cfg


def git_commit() -> str:
    """The short commit of the checkout labkit runs from ('unknown' outside git),
    with '+dirty' when tracked files outside reports/ have uncommitted changes
    (a report run rewrites reports/ itself, so those changes say nothing of the code)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)reports"], cwd=ROOT, capture_output=True, text=True,
                               timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    """A human label for the device, e.g. 'cpu (2 threads)' or the GPU's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        precision = "bf16 autocast" if autocast_dtype(device) else "fp32"
        return (f"cpu ({torch.get_num_threads()} threads, "
                f"{platform.processor() or platform.machine()}, "
                f"{torch.backends.cpu.get_cpu_capability()}, {precision})")
    return device.type


def stamp(cfg: Config, data_source: str = "", data_hash: str = "") -> str:
    """The environment stamp every notebook prints: versions, device, seed,
    profile, data source and hash, git commit."""
    import torchvision

    from . import __version__

    lines = [
        f"labkit {__version__} | python {sys.version.split()[0]} | torch {torch.__version__}"
        f" | torchvision {torchvision.__version__}",
        f"profile {cfg.profile} | lab {cfg.lab} | seed {cfg.seed}"
        f" | device {device_name(cfg.device)}",
        f"data {cfg.dataset}{' (SYNTHETIC stand-in, not real data)' if cfg.synthetic else ''}"
        f" | source {data_source or '-'} | sha256 {data_hash or '-'}",
        f"git {git_commit()} | config {cfg.hash()}",
    ]
    return "\n".join(lines)


def check_fraction(name: str, value, *, allow_one: bool = False) -> float:
    """Validate a sparsity-like fraction: a real number in [0, 1) ([0, 1] if allow_one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} must be a number in [0, 1{']' if allow_one else ')'}")
    value = float(value)
    upper_ok = value <= 1 if allow_one else value < 1
    if math.isnan(value) or value < 0 or not upper_ok:
        raise ValueError(f"{name}={value!r} is outside the allowed range "
                         f"[0, 1{']' if allow_one else ')'}")
    return value
