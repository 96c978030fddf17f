"""Datasets as tensors, and the in-memory DeviceLoader.

Every dataset is held as uint8 images ``x: (N, C, H, W)`` and int64 labels
``y: (N,)``; normalisation and augmentation happen on whole batches on the
training device (no per-image Python in the loop, no DataLoader workers).

Sources (``load(name)``):
- ``mnist``: torchvision's MNIST files under ``$LABKIT_DATA/MNIST/raw``.
- ``cifar10``: an ImageFolder tree from ``$LABKIT_CIFAR10_FOLDER`` (or the
  ``folder=`` argument) when given, else torchvision's CIFAR10 pickles under
  ``$LABKIT_DATA/cifar-10-batches-py``.
- ``synthetic-mnist`` / ``synthetic-cifar10``: deterministic, learnable
  stand-ins shaped and normalised like the real ones; no files needed.

The validation split is carved from train by a fixed permutation (independent
of the run's seed); test stays the test set. ``holdout=N`` also sets aside the
last N images of that permutation as a held-out split (never trained on, never
used for validation): validation and, while ``train_subset`` fits in what is
left, the training images are the same with or without it.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import config
from .io import atomic_save, load_verified

DATASETS = ("mnist", "cifar10", "synthetic-mnist", "synthetic-cifar10")
MNIST_STATS = ((0.1307,), (0.3081,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
VAL_SEED = 20241  # fixed: the validation split never depends on the run's seed
SPLITS = ("train", "val", "test", "holdout", "official")
OPTIONAL_SPLITS = {"holdout": "loaded with load(..., holdout=N), N > 0",
                   "official": "from holdout_as_test()"}


@dataclass
class Split:
    """One split: ``x`` uint8 (N, C, H, W), ``y`` int64 (N,). Treated as
    immutable: a subset or a move to another device is a new Split.
    ``index``: int64 (N,) on the CPU, the position of each image in the source's
    training set, for the splits load() carves from it (None otherwise)."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _prepared: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.y)

    def prepared(self, pad: int = 4) -> torch.Tensor:
        """mirror_pad(x, pad): (N, H + 2 pad, 2 (W + 2 pad), C), made on first use and
        kept, so every augmented loader over this split shares it (for 32x32 RGB
        images with pad 4 it holds 3.1x the bytes of x)."""
        if pad not in self._prepared:
            self._prepared[pad] = mirror_pad(self.x, pad)
        return self._prepared[pad]

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.y.to(device), self.index)


@dataclass
class Data:
    """A dataset ready for training: train / val / test splits plus what they are."""

    name: str                 # 'mnist', 'cifar10', 'synthetic-mnist', ...
    source: str               # where it came from (path or 'generated')
    hash: str                 # sha256 of the images and labels (train + test), first 16 hex
    train: Split
    val: Split
    test: Split
    mean: tuple
    std: tuple
    classes: tuple
    test_label: str           # how to label test accuracy, e.g. 'MNIST test set (10,000 images)'
    notes: list = field(default_factory=list)
    holdout: Split | None = None   # load(..., holdout=N): N training images set aside, else None
    holdout_label: str = ""        # e.g. '10,000 held-out CIFAR-10 training images'
    official: Split | None = None  # holdout_as_test(): the source's own (partial) test set
    official_label: str = ""       # e.g. 'CIFAR-10 test SUBSET: 1,000 test images ...'

    @property
    def indices(self) -> dict:
        """{'train', 'val'[, 'holdout']: int64 (N,)}: each split's positions in the
        source's training set (splits whose Split.index is None are left out)."""
        splits = {"train": self.train, "val": self.val, "holdout": self.holdout}
        return {k: s.index for k, s in splits.items() if s is not None and s.index is not None}

    @property
    def synthetic(self) -> bool:
        return self.name.startswith("synthetic-")

    @property
    def shape(self) -> tuple:
        """(C, H, W) of one image."""
        return tuple(self.train.x.shape[1:])

    @property
    def label(self) -> str:
        """A short name for figure titles: the dataset, plus what makes it other
        than the standard one (synthetic data, a training subset, a test subset)."""
        if self.synthetic:
            return f"{self.name} (synthetic, NOT real data)"
        parts = ([f"{len(self.train):,}-image train SUBSET"]
                 if any("SUBSET" in n for n in self.notes) else [])
        if self.official is not None:
            parts.append(f"accuracy on {len(self.test):,} held-out training images")
        elif "SUBSET" in self.test_label:
            parts.append(f"test SUBSET of {len(self.test):,} images")
        name = {"mnist": "MNIST", "cifar10": "CIFAR-10"}.get(self.name, self.name)
        return name + (f" ({', '.join(parts)})" if parts else "")

    def describe(self) -> str:
        """One line naming the data and the size of each split."""
        held = f" / holdout {len(self.holdout):,}" if self.holdout is not None else ""
        official = f" (beside it: {self.official_label})" if self.official is not None else ""
        return (f"{self.name}: train {len(self.train):,} / val {len(self.val):,}"
                f" / test {len(self.test):,}{held}"
                f" | test accuracy is on: {self.test_label}{official}")

    def loader(self, split: str, batch_size: int, **kw) -> "DeviceLoader":
        """A DeviceLoader over one of SPLITS ('train', 'val', 'test', 'holdout' or
        'official') with this data's normalisation."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not one of {SPLITS}")
        if getattr(self, split) is None:   # the optional splits: say where each comes from
            raise ValueError(f"split={split!r} needs data " + OPTIONAL_SPLITS[split])
        return DeviceLoader(getattr(self, split), batch_size, mean=self.mean, std=self.std, **kw)

    def to(self, device) -> "Data":
        """The same data with every split on `device`."""
        d = Data(**{**self.__dict__})
        d.train, d.val, d.test = self.train.to(device), self.val.to(device), self.test.to(device)
        d.holdout = self.holdout.to(device) if self.holdout is not None else None
        d.official = self.official.to(device) if self.official is not None else None
        return d

    def subset(self, n: int | None, split: str = "train", seed: int | None = 0) -> "Data":
        """This data with only `n` images of `split` (the one way to take a subset):
        seed=None: the first n; an int: a fixed random subset (torch.randperm with
        that seed). Other splits are unchanged; n=None: self. A train subset is noted
        ('SUBSET'), so labels and figure titles say so."""
        if n is None:
            return self
        if split not in SPLITS or getattr(self, split) is None:
            raise ValueError(f"split={split!r} is not a split of this data")
        s = getattr(self, split)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= len(s):
            raise ValueError(f"n={n!r} must be an integer in 1..{len(s)} ({split} images)")
        idx = (torch.arange(n) if seed is None else
               torch.randperm(len(s), generator=torch.Generator().manual_seed(seed))[:n])
        idx = idx.to(s.x.device)
        d = Data(**{**self.__dict__, split: Split(s.x[idx], s.y[idx])})
        if split == "train":
            d.notes = self.notes + [f"fine-tuning on a SUBSET of {n:,} training images"]
        return d

    def holdout_as_test(self) -> "Data":
        """The data to compare methods on: where the source's test set is partial
        (fewer than 10,000 images, e.g. the first 1,000 of CIFAR-10's) and a holdout
        was set aside, `test` becomes the holdout (labelled as what it is) and the
        partial test set is kept as `official`, to report beside it. Else self."""
        if self.holdout is None or len(self.test) >= 10_000:
            return self
        d = Data(**{**self.__dict__})
        d.test, d.test_label = self.holdout, self.holdout_label
        d.official, d.official_label = self.test, self.test_label
        return d


# ---------------------------------------------------------------- hashing

def tensor_hash(*tensors: torch.Tensor) -> str:
    """sha256 over the bytes of the tensors (first 16 hex digits)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- sources

def _mnist(root: Path) -> tuple[Split, Split, str]:
    """MNIST from torchvision's layout under root/MNIST/raw; verifies md5 of the .gz files."""
    import torchvision
    from torchvision.datasets.utils import check_integrity

    raw = root / "MNIST" / "raw"
    for url, md5 in torchvision.datasets.MNIST.resources:
        gz = raw / os.path.basename(url)
        if gz.exists() and not check_integrity(str(gz), md5):
            raise ValueError(f"MNIST file {gz} is corrupt: its md5 is not {md5}; "
                             f"delete it and fetch it again")
    splits = []
    for train in (True, False):
        try:
            ds = torchvision.datasets.MNIST(str(root), train=train, download=False)
        except RuntimeError:
            try:  # online: fetch (or just unpack) the files
                ds = torchvision.datasets.MNIST(str(root), train=train, download=True)
            except Exception as e:
                names = [os.path.basename(u) for u, _ in torchvision.datasets.MNIST.resources]
                raise FileNotFoundError(
                    f"MNIST not found under {raw} and it could not be downloaded "
                    f"({type(e).__name__}). "
                    f"Expected files: {', '.join(names)}. "
                    f"Fetch them on a machine with internet with\n"
                    f"  python -c \"import torchvision; "
                    f"torchvision.datasets.MNIST('{root}', download=True)\"\n"
                    f"or point LABKIT_DATA at a folder that holds MNIST/raw.") from e
        splits.append(Split(ds.data.unsqueeze(1).contiguous(), ds.targets.long()))
    return splits[0], splits[1], str(raw)


def _cifar10_torchvision(root: Path) -> tuple[Split, Split, str]:
    """CIFAR-10 from torchvision's pickled batches under root/cifar-10-batches-py."""
    import torchvision

    splits = []
    for train in (True, False):
        try:
            ds = torchvision.datasets.CIFAR10(str(root), train=train, download=False)
        except RuntimeError:
            try:
                ds = torchvision.datasets.CIFAR10(str(root), train=train, download=True)
            except Exception as e:
                folder = root / torchvision.datasets.CIFAR10.base_folder
                names = [n for n, _ in torchvision.datasets.CIFAR10.train_list
                         + torchvision.datasets.CIFAR10.test_list]
                raise FileNotFoundError(
                    f"CIFAR-10 not found (or corrupt) under {folder} "
                    f"and it could not be downloaded "
                    f"({type(e).__name__}). Expected files: {', '.join(names)}. Fetch them with\n"
                    f"  python -c \"import torchvision; "
                    f"torchvision.datasets.CIFAR10('{root}', download=True)\"\n"
                    f"or set LABKIT_CIFAR10_FOLDER to an ImageFolder tree "
                    f"with train/ and test/.") from e
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        splits.append(Split(x, torch.tensor(ds.targets, dtype=torch.long)))
    return splits[0], splits[1], str(root / torchvision.datasets.CIFAR10.base_folder)


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def _list_tree(folder: Path) -> tuple[tuple, dict]:
    """Classes and {split: [(path, label)]} of an ImageFolder tree with train/ and test/."""
    if not folder.is_dir():
        raise ValueError(f"ImageFolder path {folder} is not a directory")
    missing = [s for s in ("train", "test") if not (folder / s).is_dir()]
    if missing:
        raise ValueError(f"ImageFolder tree {folder} lacks the split folder(s) {missing}; "
                         "it must hold train/<class>/* and test/<class>/*")
    classes = tuple(sorted(p.name for p in (folder / "train").iterdir() if p.is_dir()))
    if not classes:
        raise ValueError(f"ImageFolder split {folder / 'train'} has no class folders")
    files = {}
    for split in ("train", "test"):
        found = tuple(sorted(p.name for p in (folder / split).iterdir() if p.is_dir()))
        if found != classes:
            raise ValueError(f"classes of {folder / split} {found} differ from train's {classes}")
        files[split] = []
        for label, cls in enumerate(classes):
            imgs = sorted(p for p in (folder / split / cls).iterdir()
                          if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not imgs:
                raise ValueError(f"class folder {folder / split / cls} is empty: "
                                 f"expected images with extensions {IMAGE_EXTENSIONS}")
            files[split] += [(p, label) for p in imgs]
    return classes, files


def _decode(paths: list) -> torch.Tensor:
    """Decode image files to uint8 (N, C, H, W) with PIL; all must share one size."""
    import numpy as np
    from PIL import Image

    def one(p):
        with Image.open(p) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        imgs = list(pool.map(one, paths))
    shapes = {tuple(i.shape) for i in imgs}
    if len(shapes) != 1:
        raise ValueError(f"images in the ImageFolder tree have different shapes "
                         f"{sorted(shapes)[:4]}")
    return torch.stack(imgs)


def _imagefolder(folder: Path) -> tuple[Split, Split, str, tuple]:
    """An ImageFolder tree decoded once and cached (keyed by file names, sizes and times)."""
    classes, files = _list_tree(folder)
    h = hashlib.sha256(str(folder).encode())
    for split in ("train", "test"):
        for p, label in files[split]:
            st = p.stat()
            h.update(f"{split}/{p.parent.name}/{p.name}:{st.st_size}:{st.st_mtime_ns}:{label}"
                     .encode())
    cache = config.cache_root() / f"imagefolder-{h.hexdigest()[:16]}.pt"
    blob = load_verified(cache)
    if blob is None:
        blob = {}
        for split in ("train", "test"):
            paths = [p for p, _ in files[split]]
            blob[split] = (_decode(paths),
                           torch.tensor([lab for _, lab in files[split]], dtype=torch.long))
        blob["classes"] = classes
        atomic_save(blob, cache)
    train, test = (Split(*blob[s]) for s in ("train", "test"))
    return train, test, str(folder), tuple(blob["classes"])


def _blobs(g: torch.Generator, n: int, size: int, channels: int, k: int) -> torch.Tensor:
    """n smooth random patterns (n, channels, size, size) in [0, 1] made of k Gaussian blobs."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    out = torch.zeros(n, channels, size, size)
    for _ in range(k):
        cy, cx = (torch.rand(n, generator=g) * (size - 8) + 4 for _ in range(2))
        sigma = torch.rand(n, generator=g) * size / 10 + size / 14
        color = torch.rand(n, channels, generator=g)
        blob = torch.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)
                         / (2 * sigma[:, None, None] ** 2))
        out += color[:, :, None, None] * blob[:, None]
    return out.clamp(0, 1)


def _synthetic(name: str, n_train: int = 4000,
               n_test: int = 1000) -> tuple[Split, Split, str, tuple]:
    """Deterministic, learnable stand-in: each class is a fixed pattern of blobs;
    a sample is its class pattern, randomly shifted, plus noise (uint8 like the real data)."""
    mnist = name == "synthetic-mnist"
    channels, size = (1, 28) if mnist else (3, 32)
    g = torch.Generator().manual_seed(1234)
    protos = _blobs(g, 10, size, channels, k=3)
    if not mnist:  # colour background, like natural images (mean near CIFAR's)
        protos = 0.3 + 0.5 * protos

    def make(n):
        y = torch.arange(n) % 10
        y = y[torch.randperm(n, generator=g)]
        x = protos[y]
        shift = torch.randint(-2, 3, (2,), generator=g).tolist()
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        x = x + 0.25 * torch.randn(x.shape, generator=g) * (0.5 if mnist else 1.0)
        if mnist:
            x = x * (x > 0.35)  # dark background with bright strokes, like MNIST
        return Split((x.clamp(0, 1) * 255).round().to(torch.uint8), y.long())

    return (make(n_train), make(n_test), "generated (labkit.data._synthetic)",
            tuple(str(i) for i in range(10)))


# ---------------------------------------------------------------- public

def load(name: str, *, root: Path | None = None, folder: Path | str | None = None,
         val_size: int | None = None, train_subset: int | None = None, holdout: int | None = None,
         device=None) -> Data:
    """Load dataset `name` (one of DATASETS) as tensors on `device`.

    folder: an ImageFolder tree (train/, test/) to use for 'cifar10'; defaults
            to $LABKIT_CIFAR10_FOLDER, and without either torchvision's pickles.
    val_size: images held out of train for validation (default 5,000; 500 synthetic).
    train_subset: keep only this many training images (after the val split).
    holdout: set aside this many training images as ``data.holdout`` (default
             None or 0: none, and every split exactly as without the argument).
    """
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is not one of {DATASETS}")
    root = Path(root) if root is not None else config.data_root()
    classes = tuple(str(i) for i in range(10))
    if name == "mnist":
        train, test, source = _mnist(root)
        stats, test_label = MNIST_STATS, f"MNIST test set ({len(test):,} images)"
    elif name == "cifar10":
        folder = Path(folder) if folder is not None else config.cifar10_folder()
        if folder is not None:
            train, test, source, classes = _imagefolder(folder)
        else:
            train, test, source = _cifar10_torchvision(root)
            classes = CIFAR10_CLASSES
        stats = CIFAR10_STATS
        test_label = (f"CIFAR-10 test set ({len(test):,} images)" if len(test) == 10000 else
                      f"CIFAR-10 test SUBSET: {len(test):,} test images (of 10,000) from {source}")
    else:
        train, test, source, classes = _synthetic(name)
        stats = MNIST_STATS if name == "synthetic-mnist" else CIFAR10_STATS
        test_label = f"{name} (synthetic stand-in, NOT real data; {len(test):,} images)"
    digest = tensor_hash(train.x, train.y, test.x, test.y)
    if val_size is None:
        val_size = 500 if name.startswith("synthetic-") else 5000
    train, val, held, notes = _carve(train, val_size, train_subset, holdout)
    data = Data(name, source, digest, train, val, test, stats[0], stats[1], classes, test_label,
                notes)
    if held is not None:
        data.holdout, data.holdout_label = held, _holdout_label(name, len(held))
    return data.to(device) if device is not None else data


def _carve(train: Split, val_size: int, train_subset: int | None,
           holdout: int | None) -> tuple[Split, Split, Split | None, list]:
    """(train, val, holdout or None, notes) from the source's training set, by one
    fixed permutation perm (VAL_SEED) of its N images: val = perm[:val_size],
    holdout = perm[N - holdout:], train = what lies between (its first
    train_subset). Each Split's index holds its positions in the source."""
    n = len(train)
    if not 0 < val_size < n:
        raise ValueError(f"val_size={val_size} must be between 1 and {n - 1}")
    holdout = 0 if holdout is None else holdout
    if isinstance(holdout, bool) or not isinstance(holdout, int) or not 0 <= holdout < n - val_size:
        raise ValueError(f"holdout={holdout!r} must be an integer between 0 and {n - val_size - 1} "
                         f"(the {n:,} training images less val_size={val_size:,} "
                         f"and at least one to train on)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SEED))
    keep, notes = perm[val_size:n - holdout], []
    if train_subset is not None:
        if not 0 < train_subset <= len(keep):
            raise ValueError(f"train_subset={train_subset} must be between 1 and {len(keep)}")
        keep = keep[:train_subset]
        notes.append(f"training on a SUBSET of {train_subset:,} training images")
    parts = [perm[:val_size], keep] + ([perm[n - holdout:]] if holdout else [])
    val, kept, *held = (Split(train.x[i], train.y[i], i) for i in parts)
    return kept, val, (held[0] if held else None), notes


def _holdout_label(name: str, n: int) -> str:
    """How to label accuracy on the held-out split,
    e.g. '10,000 held-out CIFAR-10 training images'."""
    if name.startswith("synthetic-"):
        return f"{n:,} held-out {name} training images (synthetic stand-in, NOT real data)"
    return f"{n:,} held-out {dict(mnist='MNIST', cifar10='CIFAR-10')[name]} training images"


class DeviceLoader:
    """Batches of a Split that lives on the training device.

    Yields ``(x, y)``: x float (B, C, H, W) normalised with mean/std (and, when
    ``augment``, randomly cropped from a 4-pixel reflect-padded copy and
    horizontally flipped, per image, on the device); y int64 (B,).
    With ``channels_last`` x comes in that memory layout (a free view on the
    augmented path, which works channels-last throughout).
    Shuffling and augmentation draw from a generator seeded with ``seed + epoch``
    (never from torch's global RNG), so an epoch repeats whatever ran before it.
    """

    def __init__(self, split: Split, batch_size: int, *, mean, std, shuffle: bool = False,
                 augment: bool = False, drop_last: bool = False, seed: int = 0,
                 channels_last: bool = False):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
        self.split, self.batch_size = split, batch_size
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.seed, self.epoch, self.channels_last = seed, 0, channels_last
        dev = split.x.device
        std_t = torch.tensor(std, device=dev)
        # (C,)
        self.scale, self.shift = 1.0 / (255.0 * std_t), -torch.tensor(mean, device=dev) / std_t
        # the augmented path normalises (B*H, W*C) rows: the affine map as row vectors
        w = split.x.shape[-1]
        self.scale_row, self.shift_row = self.scale.repeat(w), self.shift.repeat(w)  # (W*C,)

    def __len__(self) -> int:
        n, b = len(self.split), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        n, dev = len(self.split), self.split.x.device
        g = torch.Generator(device=dev if dev.type == "cuda" else "cpu")
        g.manual_seed(self.seed + self.epoch)
        if self.shuffle:
            order = torch.randperm(n, generator=g, device=g.device).to(dev)
        else:
            order = torch.arange(n, device=dev) if self.augment else None
        self.epoch += 1
        for i in range(len(self)):
            lo, hi = i * self.batch_size, (i + 1) * self.batch_size
            idx = order[lo:hi] if order is not None else slice(lo, hi)
            x = self._augmented(idx, g) if self.augment else self._plain(idx)
            yield x, self.split.y[idx]

    def _plain(self, idx) -> torch.Tensor:
        """(B, C, H, W) float, normalised, the images at idx (a slice or (B,) indices)."""
        x = self.split.x[idx] if isinstance(idx, slice) else self.split.x.index_select(0, idx)
        c = x.shape[1]
        x = x.float() * self.scale.view(1, c, 1, 1) + self.shift.view(1, c, 1, 1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _augmented(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, C, H, W) float, normalised, randomly cropped and flipped (drawn from
        `generator`); channels-last in memory (normalised as (B*H, W*C) rows, where
        the per-channel affine map is a row vector: cheap and vectorised)."""
        _, c, h, w = self.split.x.shape
        x = crop_flip(self.split.prepared(), idx, (h, w), generator)  # (B, H, W, C) uint8
        rows = torch.addcmul(self.shift_row, x.view(-1, w * c), self.scale_row)
        x = rows.view(-1, h, w, c).permute(0, 3, 1, 2)                  # channels_last view
        return x if self.channels_last else x.contiguous()


def _reflect_index(n: int, pad: int, device) -> torch.Tensor:
    """(n + 2 pad,) int64: the source position of each position of a reflect-padded axis."""
    i = torch.arange(-pad, n + pad, device=device).abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def mirror_pad(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Images prepared once for crop_flip: reflect-padded by `pad`, channels last,
    and each padded row followed by its mirror image.
    x: (N, C, H, W) -> (N, H + 2 pad, 2 (W + 2 pad), C), same dtype and device."""
    n, c, h, w = x.shape
    if pad < 1 or pad >= min(h, w):
        raise ValueError(f"pad={pad!r} must be at least 1 and less than the image size {h}x{w}")
    cols = _reflect_index(w, pad, x.device)
    cols = torch.cat([cols, cols.flip(0)])                                  # (2 (W + 2 pad),)
    rows = x.permute(0, 2, 3, 1).contiguous().index_select(1, _reflect_index(h, pad, x.device))
    return rows.view(-1, w, c).index_select(1, cols).view(n, h + 2 * pad, len(cols), c)


def crop_flip(prepared: torch.Tensor, idx: torch.Tensor, size: tuple,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A random crop of `size` plus a random horizontal flip (p = 1/2) of each image
    prepared[idx], independently per image, drawn from `generator` (a generator on
    prepared's device; None: torch's global RNG).
    prepared: (N, Hp, 2 Wp, C) from mirror_pad; idx: (B,) int64 -> (B, H, W, C).

    Each output row is one contiguous run of W*C values of `prepared`: a crop of
    the padded row, or, for a flipped image, a crop of its mirror image. So the
    whole batch is one index_select of rows of an overlapping (unfold) view,
    with no per-image Python and no host-device sync.
    """
    n, hp, w2, c = prepared.shape
    h, w = size
    wp = w2 // 2
    b, dev = len(idx), prepared.device
    dy = torch.randint(0, hp - h + 1, (b,), device=dev, generator=generator)
    dx = torch.randint(0, wp - w + 1, (b,), device=dev, generator=generator)
    flip = torch.randint(0, 2, (b,), device=dev, generator=generator)
    row0 = idx * (hp * w2 * c) + dy * (w2 * c) + (flip * wp + dx) * c               # (B,)
    starts = row0.view(b, 1) + torch.arange(h, device=dev).view(1, h) * (w2 * c)    # (B, H)
    runs = prepared.view(-1).unfold(0, w * c, 1)                                     # (L, W*C) view
    return runs.index_select(0, starts.view(-1)).view(b, h, w, c)
