"""Datasets as tensors (uint8 images x: (N, C, H, W), int64 labels y: (N,)) from MNIST,
CIFAR-10 or synthetic stand-ins (load), and DeviceLoader, which normalises and augments whole
batches on the training device. Val and holdout are carved from train by a fixed permutation."""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.datasets.utils import check_integrity

from . import config
from .io import atomic_save, load_verified

DATASETS = ("mnist", "cifar10", "synthetic-mnist", "synthetic-cifar10")
NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
STATS = {"mnist": ((0.1307,), (0.3081,)),
         "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
VAL_SEED = 20241  # fixed: the validation split never depends on the run's seed
SPLITS = ("train", "val", "test", "holdout", "official")
OPTIONAL_SPLITS = {"holdout": "loaded with load(..., holdout=N), N > 0",
                   "official": "from holdout_as_test()"}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

@dataclass
class Split:
    """One split, treated as immutable: ``x`` uint8 (N, C, H, W), ``y`` int64 (N,); ``index``
    int64 (N,) on the CPU: each image's position in the source's training set (or None)."""
    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _prepared: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.y)

    def prepared(self, pad: int = 4) -> torch.Tensor:
        """mirror_pad(x, pad), made once and shared by every augmented loader over this split."""
        if pad not in self._prepared:
            self._prepared[pad] = mirror_pad(self.x, pad)
        return self._prepared[pad]

    def to(self, device) -> Split:
        """This split on `device` (index stays on the CPU)."""
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
        """{'train', 'val'[, 'holdout']: int64 (N,)}: positions in the source's training set."""
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
        """A short name for figure titles: the dataset, and whether synthetic or a subset."""
        if self.synthetic:
            return f"{self.name} (synthetic, NOT real data)"
        parts = ([f"{len(self.train):,}-image train SUBSET"]
                 if any("SUBSET" in n for n in self.notes) else [])
        if self.official is not None:
            parts.append(f"accuracy on {len(self.test):,} held-out training images")
        elif "SUBSET" in self.test_label:
            parts.append(f"test SUBSET of {len(self.test):,} images")
        return NAMES.get(self.name, self.name) + (f" ({', '.join(parts)})" if parts else "")

    def describe(self) -> str:
        """One line naming the data and the size of each split."""
        held = f" / holdout {len(self.holdout):,}" if self.holdout is not None else ""
        official = f" (beside it: {self.official_label})" if self.official is not None else ""
        return (f"{self.name}: train {len(self.train):,} / val {len(self.val):,} / test "
                f"{len(self.test):,}{held} | test accuracy is on: {self.test_label}{official}")

    def _split(self, split: str) -> Split:
        """The Split named `split` (one of SPLITS; the optional ones say where they come from)."""
        config.check_choice("split", split, SPLITS)
        if getattr(self, split) is None:
            raise ValueError(f"split={split!r} needs data " + OPTIONAL_SPLITS[split])
        return getattr(self, split)

    def loader(self, split: str, batch_size: int, **kw) -> DeviceLoader:
        """A DeviceLoader over one of SPLITS with this data's normalisation."""
        return DeviceLoader(self._split(split), batch_size, mean=self.mean, std=self.std, **kw)

    def to(self, device) -> Data:
        """The same data with every split on `device`."""
        moved = {s: getattr(self, s).to(device) for s in SPLITS if getattr(self, s) is not None}
        return Data(**{**self.__dict__, **moved})

    def subset(self, n: int | None, split: str = "train", seed: int | None = 0) -> Data:
        """This data with only `n` images of `split` (the one way to take a subset); seed None:
        the first n, an int: a fixed random subset (torch.randperm with that seed); n None:
        self. A train subset is noted ('SUBSET'), so labels and figure titles say so."""
        if n is None:
            return self
        s = self._split(split)
        config.check_int("n", n, 1, len(s), f"{split} images")
        idx = (torch.arange(n) if seed is None else
               torch.randperm(len(s), generator=torch.Generator().manual_seed(seed))[:n])
        idx = idx.to(s.x.device)
        d = Data(**{**self.__dict__, split: Split(s.x[idx], s.y[idx])})
        if split == "train":
            d.notes = self.notes + [f"fine-tuning on a SUBSET of {n:,} training images"]
        return d

    def holdout_as_test(self) -> Data:
        """Where the source's test set is partial (< 10,000 images) and a holdout was set aside:
        `test` becomes the holdout and the partial test set is kept as `official`. Else self."""
        if self.holdout is None or len(self.test) >= 10_000:
            return self
        return Data(**{**self.__dict__, "test": self.holdout, "test_label": self.holdout_label,
                       "official": self.test, "official_label": self.test_label})

def tensor_hash(*tensors: torch.Tensor) -> str:
    """sha256 over the shapes and bytes of the tensors (first 16 hex digits)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

def _torchvision(cls, root: Path, where: str, files: list, hint: str) -> list:
    """[train, test] of torchvision dataset `cls` under root, downloaded only when missing
    (download=True checks every file's md5 a second time, so it is the fallback)."""
    out = []
    for train in (True, False):
        try:
            out.append(cls(str(root), train=train, download=False))
        except RuntimeError:
            try:
                out.append(cls(str(root), train=train, download=True))
            except Exception as e:
                raise FileNotFoundError(
                    f"{cls.__name__} not found (or corrupt) under {where} and it could not be "
                    f"downloaded ({type(e).__name__}). Expected files: {', '.join(files)}. "
                    f"Fetch them on a machine with internet with\n  python -c \"import "
                    f"torchvision; torchvision.datasets.{cls.__name__}('{root}', "
                    f"download=True)\"\nor {hint}.") from e
    return out

def _mnist(root: Path) -> tuple[Split, Split, str]:
    """MNIST from torchvision's layout under root/MNIST/raw; verifies the md5 of the .gz files."""
    raw, mnist = root / "MNIST" / "raw", torchvision.datasets.MNIST
    for url, md5 in mnist.resources:
        gz = raw / os.path.basename(url)
        if gz.exists() and not check_integrity(str(gz), md5):
            raise ValueError(f"MNIST file {gz} is corrupt: its md5 is not {md5}; "
                             f"delete it and fetch it again")
    files = [os.path.basename(u) for u, _ in mnist.resources]
    sets = _torchvision(mnist, root, str(raw), files,
                        "point LABKIT_DATA at a folder that holds MNIST/raw")
    train, test = (Split(ds.data.unsqueeze(1).contiguous(), ds.targets.long()) for ds in sets)
    return train, test, str(raw)

def _cifar10_torchvision(root: Path) -> tuple[Split, Split, str]:
    """CIFAR-10 from torchvision's pickled batches under root/cifar-10-batches-py."""
    cifar = torchvision.datasets.CIFAR10
    where, files = str(root / cifar.base_folder), [n for n, _ in cifar.train_list + cifar.test_list]
    sets = _torchvision(cifar, root, where, files,
                        "set LABKIT_CIFAR10_FOLDER to an ImageFolder tree with train/ and test/")
    train, test = (Split(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                         torch.tensor(ds.targets, dtype=torch.long)) for ds in sets)
    return train, test, where

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
    files = {"train": [], "test": []}
    for split in files:
        found = tuple(sorted(p.name for p in (folder / split).iterdir() if p.is_dir()))
        if found != classes:
            raise ValueError(f"classes of {folder / split} {found} differ from train's {classes}")
        for label, cls in enumerate(classes):
            imgs = sorted(p for p in (folder / split / cls).iterdir()
                          if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not imgs:
                raise ValueError(f"class folder {folder / split / cls} is empty: "
                                 f"expected images with extensions {IMAGE_EXTENSIONS}")
            files[split] += [(p, label) for p in imgs]
    return classes, files

def _decode_one(path: Path) -> torch.Tensor:
    """One image file as uint8 (3, H, W)."""
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)

def _imagefolder(folder: Path) -> tuple[Split, Split, str, tuple]:
    """An ImageFolder tree decoded once (PIL, one image size) and cached by file name and stat."""
    classes, files = _list_tree(folder)
    h = hashlib.sha256(str(folder).encode())
    for split, pairs in files.items():
        for p, label in pairs:
            st = p.stat()
            h.update(f"{split}/{p.parent.name}/{p.name}:{st.st_size}:{st.st_mtime_ns}:{label}"
                     .encode())
    cache = config.cache_root() / f"imagefolder-{h.hexdigest()[:16]}.pt"
    blob = load_verified(cache)
    if blob is None:
        blob = {"classes": classes}
        for split, pairs in files.items():
            with ThreadPoolExecutor(max_workers=4) as pool:
                imgs = list(pool.map(_decode_one, [p for p, _ in pairs]))
            shapes = {tuple(i.shape) for i in imgs}
            if len(shapes) != 1:
                raise ValueError(f"images in the ImageFolder tree have different shapes "
                                 f"{sorted(shapes)[:4]}")
            blob[split] = (torch.stack(imgs), torch.tensor([l for _, l in pairs], dtype=torch.long))
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

def _synthetic(name: str, n_train: int = 4000, n_test: int = 1000) -> tuple[Split, Split]:
    """A learnable stand-in: each class a fixed pattern of blobs; a sample is its class
    pattern, randomly shifted, plus noise (uint8 like the real data)."""
    mnist = name == "synthetic-mnist"
    channels, size = (1, 28) if mnist else (3, 32)
    g = torch.Generator().manual_seed(1234)
    protos = _blobs(g, 10, size, channels, k=3)
    protos = protos if mnist else 0.3 + 0.5 * protos   # a colour background, like CIFAR's
    splits = []
    for n in (n_train, n_test):
        y = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
        shift = torch.randint(-2, 3, (2,), generator=g).tolist()
        x = torch.roll(protos[y], shifts=shift, dims=(2, 3))
        x = x + 0.25 * torch.randn(x.shape, generator=g) * (0.5 if mnist else 1.0)
        x = x * (x > 0.35) if mnist else x   # MNIST: dark background, bright strokes
        splits.append(Split((x.clamp(0, 1) * 255).round().to(torch.uint8), y.long()))
    return splits[0], splits[1]

def load(name: str, *, root: Path | None = None, folder: Path | str | None = None,
         val_size: int | None = None, train_subset: int | None = None, holdout: int | None = None,
         device=None) -> Data:
    """Dataset `name` (one of DATASETS) as tensors on `device`. folder: an ImageFolder tree
    (train/, test/) for 'cifar10' (default $LABKIT_CIFAR10_FOLDER, else torchvision's pickles);
    val_size: train images kept for validation (default 5,000; 500 synthetic); train_subset:
    keep only this many training images; holdout: set aside this many as ``data.holdout``."""
    config.check_choice("dataset", name, DATASETS)
    root = Path(root) if root is not None else config.data_root()
    classes, real = tuple(str(i) for i in range(10)), name.removeprefix("synthetic-")
    synthetic = name != real
    if name == "mnist":
        train, test, source = _mnist(root)
    elif name == "cifar10":
        folder = Path(folder) if folder is not None else config.cifar10_folder()
        if folder is not None:
            train, test, source, classes = _imagefolder(folder)
        else:
            (train, test, source), classes = _cifar10_torchvision(root), CIFAR10_CLASSES
    else:
        (train, test), source = _synthetic(name), "generated (labkit.data._synthetic)"
    if synthetic:
        test_label = f"{name} (synthetic stand-in, NOT real data; {len(test):,} images)"
    elif name == "mnist" or len(test) == 10000:
        test_label = f"{NAMES[name]} test set ({len(test):,} images)"
    else:
        test_label = f"CIFAR-10 test SUBSET: {len(test):,} test images (of 10,000) from {source}"
    digest = tensor_hash(train.x, train.y, test.x, test.y)
    if val_size is None:
        val_size = 500 if synthetic else 5000
    train, val, held, notes = _carve(train, val_size, train_subset, holdout)
    data = Data(name, source, digest, train, val, test, *STATS[real], classes, test_label, notes)
    if held is not None:
        what = (f"{name} training images (synthetic stand-in, NOT real data)" if synthetic
                else f"{NAMES[name]} training images")
        data.holdout, data.holdout_label = held, f"{len(held):,} held-out {what}"
    return data.to(device) if device is not None else data

def _carve(train: Split, val_size: int, train_subset: int | None,
           holdout: int | None) -> tuple[Split, Split, Split | None, list]:
    """(train, val, holdout or None, notes) by one fixed permutation perm (VAL_SEED) of the
    source's N training images: val = perm[:val_size], holdout = perm[N - holdout:], train =
    what lies between (its first train_subset); each Split's index is its positions."""
    n = len(train)
    config.check_int("val_size", val_size, 1, n - 1)
    holdout = config.check_int("holdout", 0 if holdout is None else holdout, 0, n - val_size - 1,
                               f"the {n:,} training images less val_size={val_size:,} "
                               f"and at least one to train on")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SEED))
    keep, notes = perm[val_size:n - holdout], []
    if train_subset is not None:
        keep = keep[:config.check_int("train_subset", train_subset, 1, len(keep))]
        notes.append(f"training on a SUBSET of {train_subset:,} training images")
    parts = [perm[:val_size], keep] + ([perm[n - holdout:]] if holdout else [])
    val, kept, *held = (Split(train.x[i], train.y[i], i) for i in parts)
    return kept, val, (held[0] if held else None), notes

class DeviceLoader:
    """Batches ``(x, y)`` of a Split on its device: x float (B, C, H, W) normalised with mean/std
    (``augment``: a random crop of the 4-pixel reflect-padded image and a random flip per image),
    y int64 (B,). Shuffling and augmentation draw from a generator seeded with ``seed + epoch``,
    never from torch's global RNG, so an epoch repeats whatever ran before it."""

    def __init__(self, split: Split, batch_size: int, *, mean, std, shuffle: bool = False,
                 augment: bool = False, drop_last: bool = False, seed: int = 0,
                 channels_last: bool = False):
        self.batch_size = config.check_int("batch_size", batch_size, 1)
        self.split, self.shuffle, self.augment, self.drop_last = split, shuffle, augment, drop_last
        self.seed, self.epoch, self.channels_last = seed, 0, channels_last
        dev = split.x.device
        std_t = torch.tensor(std, device=dev)
        self.scale, self.shift = 1.0 / (255.0 * std_t), -torch.tensor(mean, device=dev) / std_t
        # (C,); the augmented path normalises (B*H, W*C) rows: the same map as (W*C,) rows
        w = split.x.shape[-1]
        self.scale_row, self.shift_row = self.scale.repeat(w), self.shift.repeat(w)

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
        """(B, C, H, W) float, normalised, cropped and flipped; channels-last in memory."""
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
    """Images prepared once for crop_flip: reflect-padded by `pad`, channels last, each padded
    row followed by its mirror image. x: (N, C, H, W) -> (N, H + 2 pad, 2 (W + 2 pad), C)."""
    n, c, h, w = x.shape
    if pad < 1 or pad >= min(h, w):
        raise ValueError(f"pad={pad!r} must be at least 1 and less than the image size {h}x{w}")
    cols = _reflect_index(w, pad, x.device)
    cols = torch.cat([cols, cols.flip(0)])                                  # (2 (W + 2 pad),)
    rows = x.permute(0, 2, 3, 1).contiguous().index_select(1, _reflect_index(h, pad, x.device))
    return rows.view(-1, w, c).index_select(1, cols).view(n, h + 2 * pad, len(cols), c)

def crop_flip(prepared: torch.Tensor, idx: torch.Tensor, size: tuple,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A random crop of `size` and a random horizontal flip (p = 1/2) of each image
    prepared[idx], drawn from `generator` (on prepared's device; None: the global RNG).
    prepared: (N, Hp, 2 Wp, C) from mirror_pad; idx: (B,) int64 -> (B, H, W, C)."""
    _, hp, w2, c = prepared.shape
    (h, w), wp = size, w2 // 2
    b, dev = len(idx), prepared.device
    dy = torch.randint(0, hp - h + 1, (b,), device=dev, generator=generator)
    dx = torch.randint(0, wp - w + 1, (b,), device=dev, generator=generator)
    flip = torch.randint(0, 2, (b,), device=dev, generator=generator)
    row0 = idx * (hp * w2 * c) + dy * (w2 * c) + (flip * wp + dx) * c               # (B,)
    starts = row0.view(b, 1) + torch.arange(h, device=dev).view(1, h) * (w2 * c)    # (B, H)
    runs = prepared.view(-1).unfold(0, w * c, 1)                                     # (L, W*C) view
    return runs.index_select(0, starts.view(-1)).view(b, h, w, c)
