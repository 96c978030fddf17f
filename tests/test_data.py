"""Datasets: synthetic stand-ins, real-format loaders on tiny files, the DeviceLoader."""
import dataclasses
import gzip
import hashlib
import struct

import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

import labkit as lk
from labkit import data as D


def test_synthetic_is_deterministic_and_shaped():
    a, b = D.load("synthetic-mnist"), D.load("synthetic-mnist")
    assert a.hash == b.hash and torch.equal(a.train.x, b.train.x)
    assert a.shape == (1, 28, 28) and a.train.x.dtype == torch.uint8
    c = D.load("synthetic-cifar10")
    assert c.shape == (3, 32, 32) and c.synthetic and "NOT real" in c.test_label
    assert sorted(c.test.y.unique().tolist()) == list(range(10))


def test_synthetic_normalises_like_real():
    d = D.load("synthetic-cifar10")
    x, _ = next(iter(d.loader("train", 2000)))
    assert abs(x.mean().item()) < 0.6 and 0.5 < x.std().item() < 2.0


def test_val_split_deterministic_disjoint():
    d1, d2 = D.load("synthetic-mnist", val_size=300), D.load("synthetic-mnist", val_size=300)
    assert torch.equal(d1.val.x, d2.val.x) and len(d1.val) == 300 and len(d1.train) == 4000 - 300
    rows = lambda s: {hashlib.md5(x.numpy().tobytes()).hexdigest() + str(int(y)) for x, y in zip(s.x, s.y)}
    # samples can repeat in synthetic data, so compare index sets through the permutation instead
    perm = torch.randperm(4000, generator=torch.Generator().manual_seed(D.VAL_SEED))
    assert len(set(perm[:300].tolist()) & set(perm[300:].tolist())) == 0
    assert rows(d1.val) == rows(d2.val)


def test_train_subset_is_labelled():
    d = D.load("synthetic-mnist", train_subset=1000)
    assert len(d.train) == 1000 and any("SUBSET" in n for n in d.notes)


def test_loader_covers_every_sample_once_and_reshuffles():
    d = D.load("synthetic-mnist")
    loader = d.loader("train", 256, shuffle=True, seed=3)
    ys1 = torch.cat([y for _, y in loader])
    ys2 = torch.cat([y for _, y in loader])
    assert len(ys1) == len(d.train)
    assert torch.equal(ys1.sort().values, d.train.y.sort().values)
    assert not torch.equal(ys1, ys2)  # a new order each epoch
    again = d.loader("train", 256, shuffle=True, seed=3)
    assert torch.equal(torch.cat([y for _, y in again]), ys1)  # same seed, same order


def _crops(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Every crop and mirrored crop of a reflect-padded image batch, by plain slicing.
    x: (B, C, H, W) -> (B, 2 (2 pad + 1)^2, C, H, W)."""
    _, _, h, w = x.shape
    xp = F.pad(x.float(), (pad,) * 4, mode="reflect")
    c = [xp[:, :, i:i + h, j:j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return torch.stack(c + [t.flip(3) for t in c], 1)


def test_crop_flip_gives_each_image_one_of_its_crops_and_mirrors():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 7, 9), dtype=torch.uint8, generator=g)
    prepared = D.mirror_pad(x, pad=2)
    assert prepared.shape == (6, 11, 26, 3) and prepared.dtype == torch.uint8
    cand = _crops(x, 2)                                     # (6, 50, 3, 7, 9)
    seen = set()
    torch.manual_seed(1)
    for _ in range(200):
        idx = torch.randint(0, 6, (6,))
        out = D.crop_flip(prepared, idx, (7, 9)).permute(0, 3, 1, 2).float()   # (6, 3, 7, 9)
        hits = (cand[idx] == out[:, None]).flatten(2).all(2)                  # (6, 50)
        assert hits.any(1).all(), "an output image is not a crop of its own padded image"
        seen |= {(int(i), int(k)) for i, k in zip(idx, hits.float().argmax(1))}
    # with random images each crop is unique, so every one of the 50 ways shows up
    assert {k for _, k in seen} == set(range(50))


def test_mirror_pad_rejects_a_pad_that_does_not_fit():
    with pytest.raises(ValueError, match="pad=8"):
        D.mirror_pad(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), pad=8)


@pytest.mark.parametrize("channels_last", [False, True])
def test_augmented_batches_are_normalised_crops_in_the_asked_layout(channels_last):
    d = D.load("synthetic-cifar10")
    loader = d.loader("train", 50, shuffle=True, augment=True, channels_last=channels_last)
    x, y = next(iter(loader))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert x.shape == (50, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous(memory_format=fmt)
    mean, std = torch.tensor(d.mean).view(1, 3, 1, 1), torch.tensor(d.std).view(1, 3, 1, 1)
    pixels = (x * std + mean) * 255                          # back to 0..255
    assert (pixels - pixels.round()).abs().max() < 1e-3
    order = torch.randperm(len(d.train), generator=torch.Generator().manual_seed(0))[:50]
    assert torch.equal(y, d.train.y[order])
    cand = _crops(d.train.x[order], 4)
    assert (cand == pixels.round()[:, None]).flatten(2).all(2).any(1).all()


def test_augmented_epochs_repeat_whatever_the_global_rng_did():
    d = D.load("synthetic-cifar10")
    epochs = lambda loader: [torch.cat([x for x, _ in loader]) for _ in range(2)]   # 2 x (N, 3, 32, 32)
    torch.manual_seed(0)
    first = epochs(d.loader("train", 500, shuffle=True, augment=True, seed=5))
    torch.manual_seed(99); torch.rand(1000)                  # another global RNG state
    again = epochs(d.loader("train", 500, shuffle=True, augment=True, seed=5))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], first[1])               # each epoch draws new crops
    other = epochs(d.loader("train", 500, shuffle=False, augment=True, seed=6))
    plain = epochs(d.loader("train", 500, shuffle=False, augment=True, seed=5))
    assert not torch.equal(other[0], plain[0])               # the seed, not only the order, sets the crops


def _write_idx(path, arr, magic):
    with gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in arr.shape))
        f.write(arr.numpy().tobytes())


def tiny_mnist(root, n=20):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for prefix in ("train", "t10k"):
        imgs = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = (torch.arange(n) % 10).to(torch.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", imgs, 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, 2049)
    return raw


def test_mnist_reads_torchvision_layout(tmp_path):
    tiny_mnist(tmp_path)
    d = D.load("mnist", root=tmp_path, val_size=5)
    assert d.shape == (1, 28, 28) and len(d.train) == 15 and len(d.test) == 20
    assert d.test_label.startswith("MNIST test set")


def test_mnist_rejects_corrupt_gz(tmp_path):
    raw = tiny_mnist(tmp_path)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not the real file")
    with pytest.raises(ValueError, match="corrupt.*md5"):
        D.load("mnist", root=tmp_path)


def test_mnist_missing_names_files(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        D.load("mnist", root=tmp_path)


def test_data_hash_changes_with_data(tmp_path):
    tiny_mnist(tmp_path / "a")
    tiny_mnist(tmp_path / "b")
    p = tmp_path / "b" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw = bytearray(p.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10
    p.write_bytes(bytes(raw))
    assert D.load("mnist", root=tmp_path / "a", val_size=5).hash != D.load("mnist", root=tmp_path / "b", val_size=5).hash


def tiny_tree(root, classes=("cat", "dog"), per=3, size=8):
    for split in ("train", "test"):
        for i, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for j in range(per):
                Image.new("RGB", (size, size), (40 * i + j,) * 3).save(root / split / c / f"{j}.png")
    return root


def test_imagefolder_tree(tmp_path, tmp_env):
    tiny_tree(tmp_path / "tree")
    d = D.load("cifar10", folder=tmp_path / "tree", val_size=2)
    assert d.classes == ("cat", "dog") and len(d.test) == 6 and d.shape == (3, 8, 8)
    assert "SUBSET" in d.test_label and int(d.test.x[0, 0, 0, 0]) == 0
    d2 = D.load("cifar10", folder=tmp_path / "tree", val_size=2)  # from the decode cache
    assert d2.hash == d.hash


def test_imagefolder_cache_corruption_is_rebuilt(tmp_path, tmp_env):
    tiny_tree(tmp_path / "tree")
    d = D.load("cifar10", folder=tmp_path / "tree", val_size=2)
    (entry,) = (tmp_env / "cache").glob("imagefolder-*.pt")
    entry.write_bytes(entry.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="corrupt"):
        d2 = D.load("cifar10", folder=tmp_path / "tree", val_size=2)
    assert d2.hash == d.hash


def test_configure_loads_data_and_prints_stamp(capsys):
    cfg = lk.configure("smoke", {"smoke": dict(a=1)}, lab="t", dataset="cifar10")
    out = capsys.readouterr().out
    assert cfg.dataset == "synthetic-cifar10" and cfg.data.synthetic
    for word in ("torch", "profile smoke", "seed 0", "SYNTHETIC", "sha256 " + cfg.data.hash, "git"):
        assert word in out


def test_split_prepares_its_padded_copy_once_for_every_augmented_loader():
    d = D.load("synthetic-cifar10")
    p = d.train.prepared()
    assert torch.equal(p, D.mirror_pad(d.train.x)) and d.train.prepared() is p
    next(iter(d.loader("train", 8, augment=True)))
    assert d.train.prepared() is p and d.train._prepared == {4: p}
    sub = D.Split(d.train.x[:10], d.train.y[:10])            # a subset is a new Split with its own copy
    assert sub.prepared().shape[0] == 10


def test_label_names_synthetic_data_and_subsets():
    d = D.load("synthetic-cifar10")
    assert d.label == "synthetic-cifar10 (synthetic, NOT real data)"
    real = dataclasses.replace(d, name="cifar10", notes=[], test_label="CIFAR-10 test set (10,000 images)")
    assert real.label == "CIFAR-10"
    sub = dataclasses.replace(real, notes=["training on a SUBSET of 4,000 training images"],
                              test_label="CIFAR-10 test SUBSET: 1,000 test images (of 10,000) from x")
    assert sub.label == f"CIFAR-10 ({len(d.train):,}-image train SUBSET, test SUBSET of {len(d.test):,} images)"


def test_subset_first_n_or_a_fixed_random_subset_of_one_split():
    d = D.load("synthetic-mnist")
    assert d.subset(None) is d
    first = d.subset(100, "val", seed=None)
    assert torch.equal(first.val.x, d.val.x[:100]) and first.train is d.train and first.notes == d.notes
    idx = torch.randperm(len(d.train), generator=torch.Generator().manual_seed(7))[:300]
    sub = d.subset(300, seed=7)
    assert torch.equal(sub.train.x, d.train.x[idx]) and torch.equal(sub.train.y, d.train.y[idx])
    assert torch.equal(d.subset(300, seed=7).train.x, sub.train.x)      # the same images every time
    assert sub.val is d.val and sub.test is d.test and len(d.train) == 3500
    assert "SUBSET of 300" in sub.notes[-1] and "300-image train SUBSET" in dataclasses.replace(
        sub, name="mnist").label
    for bad, split in [(0, "train"), (3501, "train"), (2.5, "train"), (True, "train")]:
        with pytest.raises(ValueError, match=f"n={bad!r}"):
            d.subset(bad, split)
    with pytest.raises(ValueError, match="holdout=N"):
        d.subset(10, "holdout")
