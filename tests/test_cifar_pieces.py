"""Issue 14's library pieces: the held-out split, flipped-image TTA, fit's
after-step hooks, parameter groups and weight averaging (EMA). Synthetic data,
tiny models."""
import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import labkit as lk
from labkit import data as D
from labkit.prune import magnitude
from labkit.methods.sss import soft_threshold

N_SOURCE = 4000  # synthetic training images before any split


def _rows(split):
    """{md5 of each image's bytes}."""
    return {hashlib.md5(x.numpy().tobytes()).hexdigest() for x in split.x}


def _tiny(seed=0):
    """A tiny conv net with BatchNorm whose output is not mirror-symmetric: (B, 3, 32, 32) -> (B, 10)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AvgPool2d(4), nn.Flatten(), nn.Linear(64, 10))


# ------------------------------------------------------------------ held-out split

def test_holdout_never_overlaps_train_val_or_test():
    d = D.load("synthetic-cifar10", holdout=1000)
    source, test, *_ = D._synthetic("synthetic-cifar10")
    idx = d.indices
    assert set(idx) == {"train", "val", "holdout"}
    assert [len(idx[k]) for k in ("train", "val", "holdout")] == [2500, 500, 1000]
    sets = {k: set(v.tolist()) for k, v in idx.items()}
    assert not sets["holdout"] & sets["train"] and not sets["holdout"] & sets["val"]
    assert not sets["train"] & sets["val"]
    assert sets["train"] | sets["val"] | sets["holdout"] == set(range(N_SOURCE))
    for k in ("train", "val", "holdout"):  # genuine training images, with their labels
        split = getattr(d, k)
        assert torch.equal(split.x, source.x[idx[k]]) and torch.equal(split.y, source.y[idx[k]])
    assert not _rows(d.holdout) & _rows(test) and torch.equal(d.test.x, test.x)
    assert d.holdout_label == "1,000 held-out synthetic-cifar10 training images (synthetic stand-in, NOT real data)"


def test_holdout_is_the_same_on_every_run_whatever_the_seed_subset_or_val_size():
    ref = D.load("synthetic-cifar10", holdout=1000)
    torch.manual_seed(123)
    lk.config.seed_everything(7)
    for kw in ({}, {"train_subset": 700}, {"val_size": 300}, {"val_size": 300, "train_subset": 2000}):
        d = D.load("synthetic-cifar10", holdout=1000, **kw)
        assert torch.equal(d.indices["holdout"], ref.indices["holdout"])
        assert torch.equal(d.holdout.x, ref.holdout.x) and torch.equal(d.holdout.y, ref.holdout.y)
    smaller = D.load("synthetic-cifar10", holdout=300)  # a smaller held-out set lies inside a larger one
    assert set(smaller.indices["holdout"].tolist()) <= set(ref.indices["holdout"].tolist())


def test_holdout_off_is_todays_split_and_on_keeps_val_and_a_subsets_train():
    perm = torch.randperm(N_SOURCE, generator=torch.Generator().manual_seed(D.VAL_SEED))
    source, *_ = D._synthetic("synthetic-cifar10")
    for off in (None, 0):
        d = D.load("synthetic-cifar10", holdout=off)
        assert d.holdout is None and d.holdout_label == "" and set(d.indices) == {"train", "val"}
        assert torch.equal(d.val.x, source.x[perm[:500]]) and torch.equal(d.train.x, source.x[perm[500:]])
        assert "holdout" not in d.describe()
    plain, held = D.load("synthetic-cifar10", train_subset=2000), D.load("synthetic-cifar10", train_subset=2000,
                                                                       holdout=1000)
    for k in ("train", "val"):
        assert torch.equal(getattr(plain, k).x, getattr(held, k).x)
        assert torch.equal(plain.indices[k], held.indices[k])
    assert "/ holdout 1,000 |" in held.describe()


def test_holdout_loader_evaluate_and_move():
    d = D.load("synthetic-cifar10", train_subset=256, holdout=500)
    x, y = next(iter(d.loader("holdout", 500)))
    assert x.shape == (500, 3, 32, 32) and x.dtype == torch.float32 and torch.equal(y, d.holdout.y)
    acc = lk.train.evaluate(_tiny(), d, "holdout", batch_size=128)
    assert 0 <= acc <= 1 and acc * 500 == round(acc * 500)
    moved = d.to("cpu")
    assert torch.equal(moved.holdout.x, d.holdout.x) and torch.equal(moved.indices["holdout"], d.indices["holdout"])
    with pytest.raises(ValueError, match="holdout=N"):
        D.load("synthetic-cifar10", train_subset=256).loader("holdout", 10)
    with pytest.raises(ValueError, match="'bogus'"):
        d.loader("bogus", 10)


@pytest.mark.parametrize("bad", [-1, 3500, 10**6, 1.5, True, "100"])
def test_holdout_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=f"holdout={bad!r}"):
        D.load("synthetic-cifar10", holdout=bad)


def test_train_subset_error_counts_the_holdout():
    with pytest.raises(ValueError, match="train_subset=3000 must be between 1 and 2500"):
        D.load("synthetic-cifar10", holdout=1000, train_subset=3000)


# ------------------------------------------------------------------ flipped-image TTA

def test_tta_is_the_argmax_of_the_mean_of_both_views_probabilities(monkeypatch):
    monkeypatch.setenv("LABKIT_PRECISION", "fp32")  # the hand computation below runs in fp32
    d = D.load("synthetic-cifar10", train_subset=256)
    model = _tiny().eval()
    hand, plain = [], []
    with torch.no_grad():
        for x, _ in d.loader("test", 300):
            probs = (F.softmax(model(x), 1) + F.softmax(model(torch.flip(x, dims=[3])), 1)) / 2  # (B, 10)
            hand.append(probs.argmax(1))
            plain.append(model(x).argmax(1))
    hand, plain = torch.cat(hand), torch.cat(plain)
    got = lk.train.predict(model, d, "test", batch_size=300, tta=True)
    assert got.shape == (len(d.test),) and torch.equal(got, hand)
    assert not torch.equal(hand, plain)  # the flip changes some answers: the test can tell TTA from no TTA
    assert torch.equal(lk.train.predict(model, d, "test", batch_size=300), plain)
    assert lk.train.evaluate(model, d, "test", batch_size=300, tta=True) == (hand == d.test.y).sum().item() / len(d.test)
    assert lk.train.evaluate(model, d, "test", batch_size=300) == (plain == d.test.y).sum().item() / len(d.test)


# ------------------------------------------------------------------ after-step hooks and EMA

def _fit(model, d, **kw):
    return lk.train.fit(model, d, epochs=1, lr=0.05, batch_size=32, progress=False, **kw)


def test_hooks_run_after_every_step_with_the_model_and_step_index():
    d = D.load("synthetic-cifar10", train_subset=100)
    model, seen = _tiny(), []
    _fit(model, d, after_step=lambda m, step: seen.append((m, step)))
    assert [s for _, s in seen] == [0, 1, 2] and all(m is model for m, _ in seen)


def test_a_noop_hook_changes_nothing():
    d = D.load("synthetic-cifar10", train_subset=128)
    runs = []
    for hooks in (None, [lambda m, s: None]):
        model = _tiny()
        h = _fit(model, d, after_step=hooks)
        runs.append((h.epochs[0]["train_loss"], model.state_dict()))
    assert runs[0][0] == runs[1][0] and all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_ema_two_steps_equals_the_hand_computed_average():
    d = D.load("synthetic-cifar10", train_subset=64)  # batch 32: two steps
    model = _tiny()
    start = [p.detach().clone() for p in model.parameters()]
    iterates, bn_means = [], []

    def record(m, step):  # runs before the EMA update: sees each step's live weights
        iterates.append([p.detach().clone() for p in m.parameters()])
        bn_means.append(m[1].running_mean.clone())

    h = _fit(model, d, ema=0.99, after_step=[record])
    assert len(iterates) == 2
    d1, d2 = 2 / 11, 3 / 12  # min(0.99, (1 + t) / (10 + t)) for t = 1, 2
    for p, a0, w1, w2 in zip(model.parameters(), start, *iterates):
        expected = (a0 * d1 + w1 * (1 - d1)) * d2 + w2 * (1 - d2)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)
    assert any(not torch.allclose(p, w2) for p, w2 in zip(model.parameters(), iterates[-1]))
    assert torch.equal(model[1].running_mean, bn_means[-1])  # buffers: the last iterate's
    assert h.epochs[0]["val_acc"] == lk.train.evaluate(model, d, "val")  # validated with the average


def test_masked_fit_with_ema_and_a_proximal_step_keeps_pruned_weights_exactly_zero():
    d = D.load("synthetic-cifar10", train_subset=256)
    model = _tiny()
    masks = magnitude.prune_global(model, 0.7)
    gamma = model[1].weight
    iterates = []

    def proximal(m, step):  # SSS's step on the BatchNorm factors
        gamma.copy_(soft_threshold(gamma, 0.2))

    def vandal(m, step):  # a hook that writes into pruned weights: the masks are re-applied after it
        for w in (m[0].weight, m[5].weight):
            w.add_(1e-3)

    def record(m, step):
        iterates.append([p.detach().clone() for p in m.parameters()])

    _fit(model, d, ema=0.9, after_step=[proximal, vandal, record])
    for name, keep in masks.items():
        w = dict(model.named_modules())[name].weight
        assert (~keep).any() and bool((w[~keep] == 0).all()), name
        assert bool((w[keep] != 0).any()), name
    assert any(not torch.equal(p, last) for p, last in zip(model.parameters(), iterates[-1]))
    last_gamma = iterates[-1][2]  # the proximal step made factors exactly zero in the last iterate;
    assert last_gamma.shape == gamma.shape and bool((last_gamma == 0).any())
    assert bool((gamma != 0).all())  # the average of those factors is not: only always-zero entries stay zero


def test_fine_tune_passes_ema_through_and_keeps_masks():
    d = D.load("synthetic-cifar10", train_subset=128)
    model = _tiny()
    masks = magnitude.prune_global(model, 0.5)
    lk.train.fine_tune(model, d, epochs=2, lr=0.05, batch_size=32, ema=0.5, progress=False)
    for name, keep in masks.items():
        assert bool((dict(model.named_modules())[name].weight[~keep] == 0).all())


@pytest.mark.parametrize("kw, match", [(dict(ema=1.0), "ema decay=1.0"), (dict(ema=0), "ema decay=0"),
                                       (dict(ema=True), "ema decay=True"), (dict(after_step=[3]), r"after_step=\[3\]")])
def test_fit_rejects_bad_ema_and_hooks(kw, match):
    d = D.load("synthetic-cifar10", train_subset=64)
    with pytest.raises(ValueError, match=match):
        _fit(_tiny(), d, **kw)


# ------------------------------------------------------------------ parameter groups

def test_param_groups_have_their_own_lr_scale_momentum_and_weight_decay(monkeypatch):
    d = D.load("synthetic-cifar10", train_subset=96)   # batch 32: 3 steps
    model, opts, lrs = _tiny(), [], []
    real = lk.train.sgd
    monkeypatch.setattr(lk.train, "sgd", lambda *a, **kw: opts.append(real(*a, **kw)) or opts[-1])
    bn = model[1]
    h = _fit(model, d, warmup=0.0, schedule="cosine", validate=False,
             param_groups=[dict(params=[bn.weight, bn.bias], lr_scale=4.0, momentum=0.0),
                           dict(params=model[5].weight, lr_scale=0.5)],
             after_step=lambda m, s: lrs.append([g["lr"] for g in opts[0].param_groups]))
    groups = opts[0].param_groups
    assert [[id(p) for p in g["params"]] for g in groups] == [
        [id(model[0].weight)], [id(model[0].bias), id(model[5].bias)], [id(bn.weight), id(bn.bias)],
        [id(model[5].weight)]]
    for s, row in enumerate(lrs):     # each step: the scheduled lr times the group's lr_scale
        now = lk.train.lr_at(s, 3, 0.05, 0.0, "cosine")
        assert row == [now, now, 4 * now, 0.5 * now]
    assert [(g["momentum"], g["nesterov"], g["weight_decay"]) for g in groups] == [
        (0.9, True, 5e-4), (0.9, True, 0.0), (0.0, False, 0.0), (0.9, True, 5e-4)]
    assert not opts[0].state[bn.weight] and "momentum_buffer" in opts[0].state[model[5].weight]
    assert len(h.epochs) == 1 and math.isnan(h.epochs[0]["val_acc"])   # validate=False


@pytest.mark.parametrize("groups, match", [
    (lambda m: dict(params=m[1].weight), "must be a list of dicts"),
    (lambda m: [dict(lr_scale=2.0)], r"param_groups\[0\] \(a dict\) must be a dict with 'params'"),
    (lambda m: [dict(params=[m[1].weight], lr=0.1)], r"unknown keys \['lr'\]"),
    (lambda m: [dict(params=[])], "distinct parameters of the model"),
    (lambda m: [dict(params=[nn.Parameter(torch.ones(4))])], "distinct parameters of the model"),
    (lambda m: [dict(params=[m[1].weight, m[1].weight])], "distinct parameters of the model"),
    (lambda m: [dict(params=[m[1].weight], lr_scale=0)], r"\['lr_scale'\]=0 must be a positive"),
    (lambda m: [dict(params=[m[1].weight], momentum=-0.1)], r"\['momentum'\]=-0.1 must be a non"),
    (lambda m: [dict(params=[m[1].weight], weight_decay=True)], r"\['weight_decay'\]=True"),
    (lambda m: [dict(params=[m[1].weight]), dict(params=[m[1].bias, m[1].weight])],
     r"param_groups\[1\] repeats a parameter"),
])
def test_fit_rejects_bad_param_groups(groups, match):
    d = D.load("synthetic-cifar10", train_subset=64)
    model = _tiny()
    with pytest.raises(ValueError, match=match):
        _fit(model, d, param_groups=groups(model))
