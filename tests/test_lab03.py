"""Lab 03: global magnitude pruning vs torch, schedules (one-shot, iterative,
AGP, lottery rewind), masks through fine-tuning, ResNet-18 size, and the
torchvision CIFAR-10 code path on tiny pickle batches written here."""
import copy
import dataclasses
import hashlib
import pickle
import types

import numpy as np
import pytest
import torch
import torch.nn.utils.prune as tprune
from torch import nn

import labkit as lk
from labkit.methods import schedules


@pytest.fixture(scope="module")
def data():
    """Synthetic CIFAR-shaped data, kept small for speed: train 48 / val 16 / test 64 (CPU)."""
    d = lk.data.load("synthetic-cifar10", val_size=16, train_subset=48)
    return dataclasses.replace(d, test=lk.data.Split(d.test.x[:64], d.test.y[:64]))


def resnet(width=0.0625, seed=0):
    torch.manual_seed(seed)
    return lk.models.build("resnet18", width=width)


def random_weights(model, seed=1):
    """Continuous random weights scaled by 1/sqrt(fan-in) like an initialisation
    (so layers differ in scale); no two |w| are equal, so there are no ties."""
    g = torch.Generator().manual_seed(seed)
    layers = list(lk.prune.prunable(model).values())
    w = torch.cat([torch.randn(m.weight.numel(), generator=g, dtype=torch.float64) / m.weight[0].numel() ** 0.5
                   for m in layers])
    rank = torch.empty_like(w)
    rank[w.abs().argsort()] = torch.arange(1, len(w) + 1, dtype=w.dtype)
    w = (w.sign() * rank / len(w)).float()  # same order of |w|, every |w| a distinct k/N
    with torch.no_grad():
        start = 0
        for m in layers:
            m.weight.copy_(w[start:start + m.weight.numel()].view_as(m.weight))
            start += m.weight.numel()
    assert w.abs().unique().numel() == w.numel()  # no ties
    return model


# ------------------------------------------------------------- global pruning vs torch

@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.9, 0.99])
def test_global_masks_equal_torch_global_unstructured(sparsity):
    ours = random_weights(resnet())
    theirs = copy.deepcopy(ours)
    masks = lk.prune.prune_global(ours, sparsity)
    layers = lk.prune.prunable(theirs)
    tprune.global_unstructured([(m, "weight") for m in layers.values()],
                               pruning_method=tprune.L1Unstructured, amount=sparsity)
    n = sum(m.weight.numel() for m in layers.values())
    assert sum(int((~mk).sum()) for mk in masks.values()) == round(sparsity * n)
    for name, m in layers.items():
        assert torch.equal(masks[name], m.weight_mask.bool()), name
        assert torch.equal(lk.prune.layer(ours, name).weight, m.weight), name
    # the layers really differ: global pruning does not give every layer the same sparsity
    per_layer = [float((~mk).float().mean()) for mk in masks.values()]
    assert max(per_layer) - min(per_layer) > 0.05


def test_iterative_global_masks_equal_torch_repeated_pruning():
    """Rounds of 20% of the remaining weights: labkit's absolute targets
    1 - 0.8^k keep the earlier masks exactly as torch's repeated pruning does."""
    ours = random_weights(resnet(), seed=2)
    theirs = copy.deepcopy(ours)
    layers = lk.prune.prunable(theirs)
    n = sum(m.weight.numel() for m in layers.values())
    done = 0
    for s in schedules.iterative(4):
        masks = lk.prune.prune_global(ours, s)
        k = lk.prune.n_zeros(s, n)
        tprune.global_unstructured([(m, "weight") for m in layers.values()],
                                   pruning_method=tprune.L1Unstructured, amount=k - done)  # int: a count
        done = k
        for name, m in layers.items():
            assert torch.equal(masks[name], m.weight_mask.bool()), (s, name)
        assert abs(lk.prune.global_sparsity(ours) - s) <= 1e-3


# ------------------------------------------------------------- schedules

def test_iterative_schedule_is_one_minus_point_eight_to_the_k():
    s = schedules.iterative(11)
    study = [0.20, 0.36, 0.49, 0.59, 0.67, 0.74, 0.79, 0.83, 0.87, 0.89, 0.91]
    assert len(s) == 11
    for k, (x, rounded) in enumerate(zip(s, study), 1):
        assert abs(x - (1 - 0.8 ** k)) <= 1e-3
        assert abs(x - rounded) <= 0.005  # the study's two-digit values
    assert schedules.iterative(3, rate=0.5) == [0.5, 0.75, 0.875]
    assert schedules.rounds_to_reach(0.36) == 2 and schedules.rounds_to_reach(0.9) == 11


def test_agp_is_cubic_and_ends_at_final():
    s = schedules.agp(0.9, 4)
    assert s[-1] == pytest.approx(0.9)
    assert s == pytest.approx([0.9 * (1 - (1 - t / 4) ** 3) for t in range(1, 5)])
    steps = np.diff([0.0] + s)
    assert all(a > b for a, b in zip(steps, steps[1:]))  # big steps first, small at the end
    assert schedules.agp(0.8, 2, initial=0.4)[-1] == pytest.approx(0.8)


def test_runner_rows_hit_targets_and_hold_both_accuracies(data):
    model = resnet()
    evaluate = lambda m: lk.train.evaluate(m, data)
    seen = []
    rows = schedules.run(model, data, schedules.iterative(5), epochs=0, lr=0.01, batch_size=32,
                         evaluate=evaluate, on_step=lambda m, r: seen.append(lk.prune.global_sparsity(m)))
    for k, r in enumerate(rows, 1):
        assert abs(r["global_sparsity"] - (1 - 0.8 ** k)) <= 1e-3
        assert r["global_sparsity"] == seen[k - 1]
        assert r["drop"] == pytest.approx(r["acc_before"] - r["acc_pruned"])
        assert 0 <= r["acc_pruned"] <= 1 and 0 <= r["acc_finetuned"] <= 1
    assert [r["acc_before"] for r in rows[1:]] == [r["acc_finetuned"] for r in rows[:-1]]

    dense = resnet()
    one = schedules.oneshot_runs(dense, data, [0.5, 0.75, 0.9], epochs=0, lr=0.01, batch_size=32,
                                 evaluate=evaluate)
    for r, t in zip(one, [0.5, 0.75, 0.9]):
        assert abs(r["global_sparsity"] - t) <= 1e-3 and abs(lk.prune.global_sparsity(r["model"]) - t) <= 1e-3
    assert lk.prune.global_sparsity(dense) == 0.0  # one-shot prunes copies, never the dense model


def test_every_epoch_of_a_schedule_gets_its_own_batches(data, monkeypatch):
    """The loader seeds epoch e with seed + e; rounds of 2 epochs must not replay each other's epochs."""
    calls, history = [], types.SimpleNamespace(seconds_per_epoch=lambda: 1.0, images_per_s=lambda: 1.0)
    monkeypatch.setattr(lk.train, "fine_tune", lambda m, d, *, epochs, seed, **kw: calls.append((seed, epochs)) or history)
    schedules.run(resnet(), data, [0.2, 0.4, 0.6], epochs=2, lr=0.01, batch_size=32, evaluate=lambda m: 0.0, seed=7)
    epoch_seeds = [s + e for s, n in calls for e in range(n)]
    assert len(calls) == 3 and epoch_seeds == list(range(7, 13))


def test_pruned_weights_stay_exactly_zero_through_every_fine_tuning_step(data):
    """A forward pre-hook sees the weights before every training step (and every
    evaluation): the pruned ones must be exactly zero each time, although their
    gradients (and so SGD with momentum and weight decay) would move them."""
    model = resnet()
    checks = {"calls": 0, "violations": 0, "moving_grads": 0}

    def hook(module, _):
        if hasattr(module, "weight_mask"):
            checks["calls"] += 1
            pruned = ~module.weight_mask
            checks["violations"] += int((module.weight.detach()[pruned] != 0).sum())
            if module.weight.grad is not None:
                checks["moving_grads"] += int((module.weight.grad[pruned] != 0).sum())

    for m in lk.prune.prunable(model).values():
        m.register_forward_pre_hook(hook)
    rows = schedules.run(model, data, [0.5, 0.8], epochs=2, lr=0.05, batch_size=16, momentum=0.9,
                         weight_decay=5e-4, evaluate=lambda m: lk.train.evaluate(m, data))
    steps = 2 * 2 * (48 // 16)
    assert checks["calls"] >= steps * len(lk.prune.prunable(model))
    assert checks["violations"] == 0
    assert checks["moving_grads"] > 0  # without the masks these weights would have changed
    assert [r["total_epochs"] for r in rows] == [2, 4]
    assert abs(lk.prune.global_sparsity(model) - 0.8) <= 1e-3


def test_lottery_rewind_resets_survivors_and_keeps_masks(data):
    model = resnet()
    early = schedules.snapshot(model)
    lk.train.fit(model, data, epochs=1, lr=0.05, batch_size=32, progress=False)
    masks = {n: m.clone() for n, m in lk.prune.prune_global(model, 0.7).items()}
    schedules.rewind(model, early)
    for name, m in lk.prune.prunable(model).items():
        assert torch.equal(m.weight_mask, masks[name])
        assert torch.equal(m.weight[m.weight_mask], early[f"{name}.weight"][m.weight_mask])
        assert bool((m.weight[~m.weight_mask] == 0).all())
    assert torch.equal(model.bn1.running_mean, early["bn1.running_mean"])


def test_runner_with_rewind_trains_from_the_rewound_weights(data):
    model = resnet()
    early = schedules.snapshot(resnet(seed=5))
    rows = schedules.run(model, data, [0.6], epochs=0, lr=0.01, batch_size=32, rewind_to=early,
                         evaluate=lambda m: lk.train.evaluate(m, data))
    assert rows[0]["rewound"]
    conv = model.layer2[0].conv1
    assert torch.equal(conv.weight[conv.weight_mask], early["layer2.0.conv1.weight"][conv.weight_mask])


def test_early_weights_replay_the_dense_start(data, tmp_env):
    a = schedules.early_weights("resnet18", data, "smoke", seed=0, rewind_epochs=1)
    b = schedules.early_weights("resnet18", data, "smoke", seed=0, rewind_epochs=1)
    init = schedules.snapshot(resnet(width=lk.recipes.dense("resnet18", "smoke")["width"], seed=0))
    assert set(a) == set(init)
    assert all(torch.equal(a[k], b[k]) for k in a)  # deterministic
    assert not torch.equal(a["conv1.weight"], init["conv1.weight"])  # trained, not the initialisation


# ------------------------------------------------------------- model, plots, recipe

def test_resnet18_width_one_has_the_standard_parameter_count():
    m = lk.models.build("resnet18", width=1.0)
    assert lk.metrics.count_params(m) == 11_173_962
    assert m.linear.out_features == 10 and m.conv1.kernel_size == (3, 3)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_recipe_profiles():
    for profile in ("smoke", "cpu", "full"):
        r = lk.recipes.dense("resnet18", profile)
        assert r["augment"] and r["epochs"] >= 1 and r["width"] > 0
    assert lk.recipes.dense("resnet18", "full")["width"] == 1.0


def test_layer_sparsity_plot_has_a_bar_per_layer():
    model = random_weights(resnet())
    lk.prune.prune_global(model, 0.8)
    table = lk.metrics.layer_table(model)
    fig = lk.plots.layer_sparsity({"global 80%": table, "again": table})
    left, right = fig.axes[:2]
    assert len(left.patches) == 2 * len(table) and len(right.patches) == len(table)
    assert [t.get_text() for t in left.get_yticklabels()] == [r["layer"] for r in table]
    import matplotlib.pyplot as plt
    plt.close(fig)


# ------------------------------------------------------------- CIFAR-10 via torchvision

def _write_cifar_batches(root, n_train=(6, 5, 4, 3, 2), n_test=7, seed=0):
    """Tiny batches in torchvision's cifar-10-batches-py pickle format;
    returns (train x, train y, test x, test y, {file: md5})."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    md5, xs, ys = {}, [], []

    def dump(name, obj):
        (folder / name).write_bytes(pickle.dumps(obj))
        md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()

    for i, n in enumerate(n_train, 1):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n).tolist()
        dump(f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "data": x, "labels": y,
                                 "filenames": [f"img{j}.png" for j in range(n)]})
        xs.append(x)
        ys += y
    tx = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    ty = rng.integers(0, 10, n_test).tolist()
    dump("test_batch", {"batch_label": "testing batch 1 of 1", "data": tx, "labels": ty})
    dump("batches.meta", {"label_names": list(lk.data.CIFAR10_CLASSES), "num_cases_per_batch": 10000,
                          "num_vis": 3072})
    return np.vstack(xs), ys, tx, ty, md5


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """Tiny pickle batches, with torchvision's md5 list pointed at them; no ImageFolder
    variable; downloading fails as it would offline."""
    import torchvision
    import torchvision.datasets.cifar as tv_cifar

    x, y, tx, ty, md5 = _write_cifar_batches(tmp_path)
    C = torchvision.datasets.CIFAR10
    monkeypatch.setattr(C, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(C, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(C, "meta", {**C.meta, "md5": md5["batches.meta"]})

    def offline(*a, **k):
        raise OSError("no network in this test")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    monkeypatch.delenv("LABKIT_CIFAR10_FOLDER", raising=False)
    return tmp_path, x, y, tx, ty


def test_cifar10_torchvision_path_reads_the_pickle_batches(tiny_cifar):
    root, x, y, tx, ty = tiny_cifar
    d = lk.data.load("cifar10", root=root, val_size=4)
    assert d.name == "cifar10" and not d.synthetic and d.classes == lk.data.CIFAR10_CLASSES
    assert d.source.endswith("cifar-10-batches-py")
    assert torch.equal(d.test.x, torch.from_numpy(tx).view(-1, 3, 32, 32))
    assert d.test.y.tolist() == ty and d.test.x.dtype == torch.uint8
    assert "7 test images (of 10,000)" in d.test_label  # never called the CIFAR-10 test set
    # train + val together are exactly the written training images, each with its label
    got = sorted((bytes(a.flatten().tolist()), int(b)) for s in (d.train, d.val) for a, b in zip(s.x, s.y))
    want = sorted((bytes(a.tolist()), int(b)) for a, b in zip(x, y))
    assert got == want and len(d.val) == 4 and len(d.train) == len(y) - 4
    # the batch rows are CHW planes: channel 0 of image 0 is its first 1,024 bytes
    assert torch.equal(lk.data.load("cifar10", root=root, val_size=1).test.x[0, 0].flatten(),
                       torch.from_numpy(tx[0, :1024]))


def test_cifar10_torchvision_path_rejects_a_corrupt_batch(tiny_cifar):
    root = tiny_cifar[0]
    p = root / "cifar-10-batches-py" / "data_batch_3"
    blob = bytearray(p.read_bytes())
    blob[-10] ^= 0xFF
    p.write_bytes(bytes(blob))
    with pytest.raises(FileNotFoundError, match="data_batch_1.*test_batch"):
        lk.data.load("cifar10", root=root)


def test_cifar10_torchvision_path_names_the_missing_files(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.delenv("LABKIT_CIFAR10_FOLDER", raising=False)
    with pytest.raises(FileNotFoundError, match="LABKIT_CIFAR10_FOLDER"):
        lk.data.load("cifar10", root=tmp_path)


# ------------------------------------------------------------- bad input

BAD = [
    ("rounds 0", lambda: schedules.iterative(0), ValueError, "rounds=0"),
    ("rounds float", lambda: schedules.iterative(2.5), ValueError, "rounds=2.5"),
    ("rate 1", lambda: schedules.iterative(3, rate=1.0), ValueError, "rate"),
    ("rate 0", lambda: schedules.iterative(3, rate=0.0), ValueError, "rate=0"),
    ("agp final 1", lambda: schedules.agp(1.0, 3), ValueError, "final sparsity"),
    ("agp steps 0", lambda: schedules.agp(0.9, 0), ValueError, "steps=0"),
    ("agp initial > final", lambda: schedules.agp(0.5, 3, initial=0.6), ValueError, "initial=0.6"),
    ("one-shot 1.2", lambda: schedules.oneshot([0.5, 1.2]), ValueError, "1.2"),
    ("one-shot empty", lambda: schedules.oneshot([]), ValueError, "at least one"),
    ("one-shot string", lambda: schedules.oneshot(["0.5"]), TypeError, "'0.5'"),
    ("rewind not a dict", lambda: schedules.rewind(resnet(), [1, 2]), TypeError, "list"),
    ("rewind other model", lambda: schedules.rewind(resnet(), schedules.snapshot(resnet(width=0.125))),
     ValueError, "shape"),
    ("rewind missing keys", lambda: schedules.rewind(resnet(), {"conv1.weight": torch.zeros(1)}), ValueError,
     "missing"),
    ("recipe profile", lambda: lk.recipes.dense("resnet18", "laptop"), ValueError, "laptop"),
    ("recipe setting", lambda: lk.recipes.dense("resnet18", "cpu", depth=3), ValueError, "depth"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_rejected_with_a_clear_error(case):
    _, call, err, text = case
    with pytest.raises(err, match=text):
        call()


def test_runner_rejects_bad_schedules(data):
    kw = dict(epochs=0, lr=0.01, batch_size=32, evaluate=lambda m: 0.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        schedules.run(resnet(), data, [0.5, 0.3], **kw)
    with pytest.raises(ValueError, match="1.0"):
        schedules.run(resnet(), data, [0.5, 1.0], **kw)
    with pytest.raises(ValueError, match="epochs=-1"):
        schedules.run(resnet(), data, [0.5], **{**kw, "epochs": -1})
    with pytest.raises(ValueError, match="rewind_epochs=5"):
        schedules.early_weights("resnet18", data, "smoke", rewind_epochs=5)
    model = resnet()
    lk.prune.prune_global(model, 0.6)
    with pytest.raises(ValueError, match="un-prune"):
        schedules.run(model, data, [0.4], **kw)
