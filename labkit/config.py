"""Profiles (smoke: synthetic stand-ins, tiny sizes; cpu: real data, laptop-sized; full: the
studies' sizes, one GPU), paths, device, seeding, the environment stamp, shared validators."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

__version__ = "0.1.0"
PROFILES = ("smoke", "cpu", "full")
SYNTHETIC = {"mnist": "synthetic-mnist", "cifar10": "synthetic-cifar10"}  # smoke's stand-ins
_PKG = Path(__file__).resolve().parent
# the project root when labkit runs from its checkout (editable install), else the working dir
ROOT = _PKG.parent if (_PKG.parent / "pyproject.toml").exists() else Path.cwd()

def check_choice(name: str, value, allowed) -> None:
    """ValueError naming `value` unless it is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {tuple(allowed)}")

def check_int(name: str, value, lo: int, hi: int | None = None, what: str = "") -> int:
    """Validate an integer in [lo, hi] (hi None: no upper bound); `what` explains the bounds."""
    if (isinstance(value, bool) or not isinstance(value, int) or value < lo
            or (hi is not None and value > hi)):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        what = f"; {what}" if what else ""
        raise ValueError(f"{name}={value!r} must be {bound} (an integer{what})")
    return value

def check_fraction(name: str, value) -> float:
    """Validate a sparsity-like fraction: a real number in [0, 1) (NaN is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} must be a number in [0, 1)")
    value = float(value)
    if not 0 <= value < 1:
        raise ValueError(f"{name}={value!r} is outside the allowed range [0, 1)")
    return value

def check_positive(name: str, value, allow_zero: bool = False, what: str = "") -> float:
    """`value` as a float: a real number (not a bool) > 0 (>= 0 with allow_zero), else a
    ValueError naming it; `what` ends the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name}={value!r} must be a "
                         f"{'non-negative' if allow_zero else 'positive'} number{what}")
    return float(value)

def _path_from_env(var: str, default: Path | None) -> Path | None:
    """An absolute path from $`var` (relative to the project root), else `default`."""
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
    """Where reports and results.jsonl go: ``$LABKIT_REPORTS``, else <root>/reports/interactive
    (a notebook run by hand never writes over the committed report)."""
    return _path_from_env("LABKIT_REPORTS", ROOT / "reports" / "interactive")

def cifar10_folder() -> Path | None:
    """An ImageFolder tree (train/, test/) to use as CIFAR-10: $LABKIT_CIFAR10_FOLDER or None."""
    return _path_from_env("LABKIT_CIFAR10_FOLDER", None)

def default_profile() -> str:
    """The profile of a notebook run by hand: ``$LABKIT_PROFILE``, else 'cpu'."""
    profile = os.environ.get("LABKIT_PROFILE") or "cpu"
    check_choice("LABKIT_PROFILE", profile, PROFILES)
    return profile

def progress() -> bool:
    """Whether progress bars are shown: off when $LABKIT_PROGRESS is '0' (report runs)."""
    return os.environ.get("LABKIT_PROGRESS", "1") != "0"

def choose_device(name: str | None = None) -> torch.device:
    """The training device: `name` if given, else cuda > mps > cpu."""
    if name is None:
        mps = torch.backends.mps.is_available()
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    allowed = ("cpu", "cuda", "mps")
    if not isinstance(name, str) or name.split(":")[0] not in allowed:
        raise ValueError(f"device={name!r} is not one of {allowed}")
    return torch.device(name)

@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """True when /proc/cpuinfo lists bf16 in hardware (avx512_bf16, amx_bf16 or Arm's bf16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set(" ".join(l.split(":", 1)[1] for l in text.splitlines()
                         if l.startswith(("flags", "Features")) and ":" in l).split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})

def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA and on CPUs with native bf16 (emulated bf16 is slower than fp32), else
    None (fp32); $LABKIT_PRECISION=fp32 forces fp32 everywhere."""
    precision = os.environ.get("LABKIT_PRECISION") or "auto"
    check_choice("LABKIT_PRECISION", precision, ("auto", "fp32"))
    if precision == "auto" and (device.type == "cuda" or (device.type == "cpu" and native_bf16())):
        return torch.bfloat16
    return None

def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch on every device."""
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)

class Config(dict):
    """A dict of settings with attribute access (``cfg.epochs``): profile, lab, seed,
    device (torch.device), dataset, plus the lab's hyper-parameters for this profile."""

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
    """The Config of one notebook run, seeded. hparams: {profile: {setting: value}}; dataset:
    'mnist' or 'cifar10' (smoke swaps in its synthetic stand-in); overrides replace the
    profile's settings (None: keep)."""
    check_choice("profile", profile, PROFILES)
    if not isinstance(hparams, dict) or profile not in hparams:
        raise ValueError(f"hparams must map each profile to a dict; missing {profile!r}")
    settings = dict(hparams[profile])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(overrides.keys() - settings.keys())
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r}; this lab has {sorted(settings)}")
    settings.update(overrides)
    dataset = SYNTHETIC.get(dataset, dataset) if profile == "smoke" else dataset
    seed = 0 if seed is None else int(seed)
    cfg = Config(profile=profile, lab=str(lab), seed=seed, dataset=dataset, **settings,
                 device=choose_device(device))
    seed_everything(seed)
    return cfg

def git_commit() -> str:
    """The short commit of the checkout ('unknown' outside git), '+dirty' when tracked files
    outside reports/ changed (a report run rewrites reports/ itself)."""
    git = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports"]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"

def device_name(device: torch.device) -> str:
    """A human label for the device, e.g. 'cpu (2 threads, x86_64, AVX512, fp32)' or the GPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        precision = "bf16 autocast" if autocast_dtype(device) else "fp32"
        cpu = platform.processor() or platform.machine()
        return (f"cpu ({torch.get_num_threads()} threads, {cpu}, "
                f"{torch.backends.cpu.get_cpu_capability()}, {precision})")
    return device.type

def stamp(cfg: Config, data_source: str = "", data_hash: str = "") -> str:
    """The environment stamp every notebook prints: versions, device, seed, profile, data
    source and hash, git commit."""
    synthetic = " (SYNTHETIC stand-in, not real data)" if cfg.synthetic else ""
    return "\n".join([
        f"labkit {__version__} | python {sys.version.split()[0]} | torch {torch.__version__}"
        f" | torchvision {torchvision.__version__}",
        f"profile {cfg.profile} | lab {cfg.lab} | seed {cfg.seed}"
        f" | device {device_name(cfg.device)}",
        f"data {cfg.dataset}{synthetic} | source {data_source or '-'} | sha256 {data_hash or '-'}",
        f"git {git_commit()} | config {cfg.hash()}",
    ])
