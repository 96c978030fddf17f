"""Bad input across the public API: each case raises ValueError/TypeError whose
message names the bad value, and leaves no partial files behind."""
import os
from unittest import mock

import pytest
import torch
from PIL import Image

import labkit as lk
import labkit.report  # noqa: F401  (not imported by labkit itself)


def mlp():
    return lk.models.build("mlp", width=0.05)


def vgg():
    return lk.models.build("vgg", width=0.0625)


def tree(root, *, drop_split=None, empty_class=False):
    for split in ("train", "test"):
        if split == drop_split:
            continue
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            if empty_class and c == "b":
                continue
            Image.new("RGB", (4, 4)).save(root / split / c / "0.png")
    return root


def precision(value):
    with mock.patch.dict(os.environ, LABKIT_PRECISION=value):
        return lk.config.autocast_dtype(torch.device("cpu"))


def corrupt_results(root):
    p = root / "r.jsonl"
    p.write_text('{"ok": 1}\n{oops\n')
    return p


CASES = [
    # (id, call(tmp_path), exception, text the message must contain)
    ("sparsity negative", lambda t: lk.prune.prune_per_tensor(mlp(), -0.1), ValueError, "-0.1"),
    ("latency rounds zero", lambda t: lk.metrics.latency(mlp(), (1, 28, 28), rounds=0), ValueError, "rounds=0"),
    ("sparsity one", lambda t: lk.prune.prune_per_tensor(mlp(), 1.0), ValueError, "1.0"),
    ("sparsity above one", lambda t: lk.prune.prune_global(mlp(), 1.5), ValueError, "1.5"),
    ("sparsity NaN", lambda t: lk.prune.prune_global(mlp(), float("nan")), ValueError, "nan"),
    ("sparsity string", lambda t: lk.prune.prune_per_tensor(mlp(), "0.5"), TypeError, "'0.5'"),
    ("sparsity bool", lambda t: lk.prune.prune_layer(mlp(), "fc1", True), TypeError, "True"),
    ("unknown layer", lambda t: lk.prune.prune_layer(mlp(), "fc9", 0.5), ValueError, "fc9"),
    ("non-prunable layer", lambda t: lk.prune.prune_layer(mlp(), "relu1", 0.5), TypeError, "ReLU"),
    ("dict names missing layer", lambda t: lk.prune.prune_per_tensor(mlp(), {"fc1": 0.5, "nope": 0.5}),
     ValueError, "nope"),
    ("dict bad value", lambda t: lk.prune.prune_per_tensor(mlp(), {"fc1": 1.5}), ValueError, "1.5"),
    ("global unknown layer", lambda t: lk.prune.prune_global(mlp(), 0.5, layers=["bogus"]), ValueError, "bogus"),
    ("unit pruning on VGG", lambda t: lk.prune.prune_units(vgg(), 0.5), TypeError, "VGG"),
    ("unit sparsity too big", lambda t: lk.prune.prune_units(mlp(), 1.2), ValueError, "1.2"),
    ("channel shrink on MLP", lambda t: lk.prune.shrink_vgg(mlp(), {}), TypeError, "MLP"),
    ("channel conv index", lambda t: lk.prune.shrink_vgg(vgg(), {42: [0]}), ValueError, "42"),
    ("channel duplicate", lambda t: lk.prune.shrink_vgg(vgg(), {0: [1, 1]}), ValueError, "conv0"),
    ("channel ranking kind", lambda t: lk.prune.l2_ranking(vgg(), 0, by="max"), ValueError, "max"),
    ("mask shape", lambda t: lk.prune.set_mask(mlp().fc1, torch.ones(3, 3, dtype=torch.bool)), ValueError, "(3, 3)"),
    ("unknown profile", lambda t: lk.configure("fast", {"fast": {}}, lab="x", dataset="mnist"), ValueError, "fast"),
    ("unknown setting", lambda t: lk.config.make("smoke", {"smoke": {}}, lab="x", dataset="mnist", epochz=3),
     ValueError, "epochz"),
    ("unknown device", lambda t: lk.config.choose_device("tpu"), ValueError, "tpu"),
    ("unknown dataset", lambda t: lk.data.load("imagenet"), ValueError, "imagenet"),
    ("val split too big", lambda t: lk.data.load("synthetic-mnist", val_size=10**6), ValueError, "1000000"),
    ("imagefolder not a dir", lambda t: lk.data.load("cifar10", folder=t / "nowhere"), ValueError, "nowhere"),
    ("imagefolder missing split", lambda t: lk.data.load("cifar10", folder=tree(t / "x", drop_split="test")),
     ValueError, "test"),
    ("imagefolder empty class", lambda t: lk.data.load("cifar10", folder=tree(t / "y", empty_class=True)),
     ValueError, "b"),
    ("batch size zero", lambda t: lk.data.load("synthetic-mnist").loader("train", 0), ValueError, "batch_size=0"),
    ("unknown split", lambda t: lk.data.load("synthetic-mnist").loader("dev", 8), ValueError, "dev"),
    ("subset too big", lambda t: lk.data.load("synthetic-mnist").subset(10**6), ValueError, "n=1000000"),
    ("subset unknown split", lambda t: lk.data.load("synthetic-mnist").subset(5, "dev"), ValueError, "dev"),
    ("holdout too big", lambda t: lk.data.load("synthetic-mnist", holdout=3500), ValueError, "holdout=3500"),
    ("recipe unknown profile", lambda t: lk.recipes.dense("vgg", "laptop"), ValueError, "laptop"),
    ("dense setting unknown", lambda t: lk.recipes.dense("vgg", "cpu", epochz=3), ValueError, "epochz"),
    ("LABKIT_PRECISION", lambda t: precision("fp16"), ValueError, "LABKIT_PRECISION='fp16'"),
    ("unknown model", lambda t: lk.models.build("alexnet"), ValueError, "alexnet"),
    ("negative width", lambda t: lk.models.build("vgg", width=-1), ValueError, "-1"),
    ("wrong input shape", lambda t: lk.metrics.macs(mlp(), (3, 32, 32)), ValueError, "(3, 32, 32)"),
    ("fit wrong data shape", lambda t: lk.train.fit(mlp(), lk.data.load("synthetic-cifar10"), epochs=1, lr=0.1,
                                                    batch_size=8), ValueError, "(3, 32, 32)"),
    ("negative epochs", lambda t: lk.train.fit(mlp(), lk.data.load("synthetic-mnist"), epochs=-1, lr=0.1,
                                               batch_size=8), ValueError, "-1"),
    ("unknown schedule", lambda t: lk.train.fit(mlp(), lk.data.load("synthetic-mnist"), epochs=1, lr=0.1,
                                                batch_size=8, schedule="step"), ValueError, "step"),
    ("corrupt results line", lambda t: lk.results.load(corrupt_results(t)), ValueError, "line 2"),
    ("unknown recipe", lambda t: lk.recipes.dense("lenet", "cpu"), ValueError, "lenet"),
    ("results unknown profile", lambda t: lk.results.path_for("gpu"), ValueError, "gpu"),
    ("report --only unknown", lambda t: lk.report.find_notebooks(lk.report.NOTEBOOKS, ["99_nothing"]),
     ValueError, "99_nothing"),
]


@pytest.mark.parametrize("call,exc,text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(call, exc, text, tmp_env):
    with pytest.raises(exc) as info:
        call(tmp_env)
    assert text in str(info.value), str(info.value)
    assert not list(tmp_env.rglob("*.tmp")), "a partial file was left behind"


def test_enough_cases():
    assert len(CASES) >= 25
