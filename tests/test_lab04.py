"""Lab 04: Pareto frontier, greedy filter pruning, Sparse Structure Selection."""
import math

import pytest

import labkit as lk


# ---------------------------------------------------------------- pareto_front

def test_pareto_front_drops_dominated_points_and_sorts_by_cost():
    pts = [(3.0, 0.90), (1.0, 0.60), (2.0, 0.80), (2.5, 0.70), (4.0, 0.85)]
    # (2.5, .70) is beaten by (2.0, .80); (4.0, .85) by (3.0, .90)
    assert lk.metrics.pareto_front(pts) == [1, 2, 0]


def test_pareto_front_ties():
    # equal cost: only the more accurate survives
    assert lk.metrics.pareto_front([(1.0, 0.5), (1.0, 0.7)]) == [1]
    # equal accuracy: only the cheaper survives
    assert lk.metrics.pareto_front([(2.0, 0.7), (1.0, 0.7)]) == [1]
    # exact duplicates dominate neither each other: both kept, in index order
    assert lk.metrics.pareto_front([(1.0, 0.7), (0.5, 0.2), (1.0, 0.7)]) == [1, 0, 2]
    # a duplicate of a dominated point stays dominated
    assert lk.metrics.pareto_front([(2.0, 0.5), (1.0, 0.9), (2.0, 0.5)]) == [1]


def test_pareto_front_brute_force_definition():
    pts = [(c, a) for c in (1, 2, 3) for a in (0.1, 0.5, 0.9)] + [(1.5, 0.5), (2, 0.95)]
    front = lk.metrics.pareto_front(pts)

    def dominated(p):
        return any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in pts)

    assert sorted(front) == [i for i, p in enumerate(pts) if not dominated(p)]
    assert [pts[i][0] for i in front] == sorted(pts[i][0] for i in front)


def test_pareto_front_edge_cases():
    assert lk.metrics.pareto_front([]) == []
    assert lk.metrics.pareto_front([(5, 0.1)]) == [0]


@pytest.mark.parametrize("bad, exc, text", [
    ([(1.0, 0.5), (math.nan, 0.9)], ValueError, "nan"),
    ([(1.0, math.inf)], ValueError, "inf"),
    ([(1.0, 0.5, 3.0)], TypeError, "(1.0, 0.5, 3.0)"),
    ([("a", 0.5)], TypeError, "'a'"),
    ([7], TypeError, "7"),
])
def test_pareto_front_rejects_bad_points(bad, exc, text):
    with pytest.raises(exc, match=text.replace("(", r"\(").replace(")", r"\)")):
        lk.metrics.pareto_front(bad)


# ---------------------------------------------------------------- fixtures

import copy  # noqa: E402

import torch  # noqa: E402

from labkit.data import Data, Split  # noqa: E402
from labkit.methods import greedy, sss  # noqa: E402


def tiny_vgg(seed=0):
    """VGG at width 1/16: channels (4, 8, 16, 16, 32, 32, 32, 32), BN stats made non-trivial."""
    torch.manual_seed(seed)
    m = lk.models.build("vgg", width=0.0625)
    with torch.no_grad():
        for _, bn in lk.prune.channels.convs(m):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def tiny_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)

    def split(k):
        y = torch.randint(0, 10, (k,), generator=g)
        x = torch.randint(0, 256, (k, 3, 32, 32), generator=g, dtype=torch.uint8)
        x[:, y % 3] = (x[:, y % 3] // 2 + 120)  # a little signal
        return Split(x, y)

    return Data(name="synthetic-cifar10", source="test", hash="0", train=split(n), val=split(64),
                test=split(32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), classes=tuple("abcdefghij"),
                test_label="test images")


X = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def same(a, b):
    a.eval(), b.eval()
    with torch.no_grad():
        return torch.allclose(a(X), b(X), atol=1e-5)


# ---------------------------------------------------------------- greedy

def test_vgg_macs_matches_the_flop_counter():
    m = tiny_vgg()
    small = lk.prune.shrink_vgg(m, {2: [0, 3, 5], 7: list(range(10))})
    for model in (m, small):
        assert greedy.vgg_macs(model) == lk.metrics.macs(model, (3, 32, 32))["macs"]


def test_greedy_returns_smaller_models_equal_to_the_masked_original():
    m, data = tiny_vgg(), tiny_data()
    ev = lk.train.evaluator(data.subset(16, "val", seed=None))
    results = greedy.greedy_prune(m, ev, [0.8, 0.6], step=0.25, progress=False)
    assert [r.target for r in results] == [0.8, 0.6]
    dense = greedy.cost(m, "params")
    for r in results:
        assert r.ratio <= r.target and greedy.cost(r.model, "params") == round(r.ratio * dense)
        assert sum(r.model.channels) < sum(m.channels)
        assert tuple(len(r.keep[i]) for i in range(8)) == r.model.channels
        masked = lk.prune.mask_channels(copy.deepcopy(m), r.keep)
        assert same(r.model, masked)              # no fine-tune: the small model IS the masked original
        assert same(r.model, r.expand())          # and writes back into the original shape
        assert lk.metrics.count_params(r.expand()) == dense
    assert results[1].steps[:len(results[0].steps)] == results[0].steps
    assert all(s.removed == max(1, round(0.25 * (s.channels[s.layer] + s.removed))) for s in results[1].steps)
    assert not torch.equal(m.backbone.conv0.weight, torch.zeros(1))  # input untouched
    assert m.channels == (4, 8, 16, 16, 32, 32, 32, 32)


def test_greedy_commits_the_removal_that_loses_least():
    m = tiny_vgg()
    ev = lambda model: -abs(model.channels[5] - 24) - 0.01 * sum(model.channels)  # noqa: E731
    r = greedy.greedy_prune(m, ev, [0.95], step=0.25, progress=False)[0]
    assert r.steps[0].layer == 5  # conv5 32 -> 24 channels scores best


def test_greedy_with_finetune_still_expands_exactly():
    m, data = tiny_vgg(), tiny_data()
    ev = lk.train.evaluator(data.subset(16, "val", seed=None))
    calls = []

    def finetune(model):
        calls.append(model.channels)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))

    r = greedy.greedy_prune(m, ev, 0.7, by="macs", step=0.3, finetune=finetune, progress=False)[0]
    assert len(calls) == len(r.steps) and all(s.acc_tuned is not None for s in r.steps)
    assert r.ratio <= 0.7 and greedy.cost(r.model, "macs") <= 0.7 * greedy.cost(m, "macs")
    assert same(r.model, r.expand())
    assert not same(r.model, lk.prune.mask_channels(copy.deepcopy(m), r.keep))  # fine-tuned weights differ


def test_hybrid_masks_the_remaining_filters():
    m, data = tiny_vgg(), tiny_data()
    r = greedy.greedy_prune(m, lk.train.evaluator(data.subset(16, "val", seed=None)), 0.8, step=0.25, progress=False)[0]
    h = greedy.hybrid(r, 0.5)
    assert h.channels == r.model.channels and lk.prune.global_sparsity(h) == pytest.approx(0.5, abs=1e-4)
    assert lk.prune.global_sparsity(r.model) == 0.0  # the greedy result is not modified
    expected = 1 - 0.5 * sum(w.numel() for w in (x.weight for x in lk.prune.prunable(r.model).values())) / \
        sum(x.weight.numel() for x in lk.prune.prunable(m).values())
    assert lk.metrics.relative_sparsity(h, m) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("kw, text", [
    (dict(targets=[0.0]), "target=0.0"), (dict(targets=[1.5]), "target=1.5"), (dict(targets=[]), "empty"),
    (dict(targets=[0.5], by="flops"), "by='flops'"), (dict(targets=[0.5], step=1.0), "step=1.0"),
    (dict(targets=[0.5], min_channels=0), "min_channels=0"),
    (dict(targets=[0.001], min_channels=4, step=0.5), "unreachable"),
])
def test_greedy_rejects_bad_input(kw, text):
    targets = kw.pop("targets")
    with pytest.raises(ValueError, match=text.replace("(", r"\(")):
        greedy.greedy_prune(tiny_vgg(), lambda m: 0.0, targets, progress=False, **kw)


def test_greedy_rejects_non_vgg_and_bad_batch_sets():
    with pytest.raises(TypeError, match="MLP"):
        greedy.greedy_prune(lk.models.build("mlp", width=0.1), lambda m: 0.0, 0.5)
    with pytest.raises(ValueError, match="n=65"):
        tiny_data().subset(65, "val", seed=None)
    with pytest.raises(ValueError, match="n=0"):
        tiny_data().subset(0)
    sub = tiny_data().subset(10)
    assert len(sub.train) == 10 and "SUBSET" in sub.notes[-1]


# ---------------------------------------------------------------- SSS

def test_soft_threshold_is_the_l1_prox():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.0, 3.0])
    assert torch.equal(sss.soft_threshold(x, 0.5, nonneg=False), torch.tensor([-1.5, 0.0, 0.0, 0.0, 0.5, 2.5]))
    assert torch.equal(sss.soft_threshold(x, 0.5, nonneg=True), torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 2.5]))
    with pytest.raises(ValueError, match="-1"):
        sss.soft_threshold(x, -1)


def test_proximal_steps_reach_exact_zeros_on_a_toy_lasso():
    # min_g 0.5 * ||g - b||^2 + lam * |g|_1 with g >= 0: solution max(b - lam, 0), exact zeros
    b, lam, lr = torch.tensor([2.0, 0.3, -1.0, 0.05, 0.9]), 0.4, 0.3
    g = torch.ones(5)
    for _ in range(200):
        g = sss.soft_threshold(g - lr * (g - b), lr * lam, nonneg=True)
    assert torch.allclose(g, (b - lam).clamp_min(0), atol=1e-6)
    assert torch.equal(g == 0, torch.tensor([False, True, True, True, False]))
    # a plain (sub)gradient step on the same loss hovers around zero instead of landing on it
    h = torch.ones(5)
    for _ in range(200):
        h = h - lr * ((h - b) + lam * torch.sign(h))
    assert int((h == 0).sum()) < 3


def test_sparse_training_drives_channel_factors_to_exactly_zero():
    m, data = tiny_vgg(), tiny_data(n=64)
    # 6 steps of shrink gate_lr * lam (cosine-decayed, about 2 in all) against BN weights 0.5..1.5
    r = sss.sss_prune(m, data, lam=0.5, epochs=3, lr=0.05, gate_lr=1.0, batch_size=32, progress=False)
    zeros = [int((f == 0).sum()) for f in r.factors]
    assert r.zeros() == sum(zeros) > sum(m.channels) // 2          # exactly 0.0, not merely small
    assert r.model.channels == tuple(max(1, c - z) for c, z in zip(m.channels, zeros))
    for f, (_, bn) in zip(r.factors, lk.prune.channels.convs(r.trained)):
        assert torch.equal(f, bn.weight.detach())
    # no regulariser: no factor reaches zero, nothing is removed
    weak = sss.sss_prune(m, data, lam=0.0, epochs=1, lr=0.05, batch_size=32, progress=False)
    assert weak.zeros() == 0 and weak.model.channels == m.channels


def test_sss_small_model_equals_the_masked_trained_model():
    m, data = tiny_vgg(), tiny_data(n=64)
    r = sss.sss_prune(m, data, lam=0.5, epochs=2, lr=0.05, gate_lr=1.0, batch_size=32, progress=False)
    assert 0 < r.zeros() and sum(m.channels) > sum(r.model.channels) > len(m.channels)
    assert same(r.model, lk.prune.mask_channels(copy.deepcopy(r.trained), r.keep))
    assert same(r.model, r.expand())
    keep = sss.plan([f.abs() for f in r.factors], threshold=float(torch.cat(r.factors).abs().median()))
    small = lk.prune.shrink_vgg(r.trained, keep)
    assert sum(small.channels) < sum(m.channels)
    assert same(small, lk.prune.mask_channels(copy.deepcopy(r.trained), keep))
    assert same(small, lk.prune.expand_vgg(small, keep, m.channels))


def test_plan_keeps_factors_above_the_threshold():
    f = [torch.tensor([0.0, 0.5, 0.0, 2.0]), torch.tensor([0.0, 0.0])]
    keep = sss.plan(f)
    assert keep[0].tolist() == [1, 3] and keep[1].tolist() == [0]   # min_channels=1 keeps one
    assert sss.plan(f, threshold=1.0)[0].tolist() == [3]


def test_recalibrate_bn_matches_the_batch_statistics():
    m, data = tiny_vgg(), tiny_data(n=64)
    sss.recalibrate_bn(m, data, batches=1, batch_size=64)
    x = next(iter(data.loader("train", 64)))[0]
    conv0 = m.backbone.conv0(x)
    assert torch.allclose(m.backbone.bn0.running_mean, conv0.mean(dim=(0, 2, 3)), atol=1e-4)
    assert not m.training


@pytest.mark.parametrize("kw, text", [
    (dict(lam=-1.0), "lam=-1.0"), (dict(lam=0.1, lr=0.0), "lr=0.0"), (dict(lam=0.1, epochs=0), "epochs=0"),
    (dict(lam=0.1, gate_lr=-2), "gate_lr=-2"), (dict(lam=0.1, threshold=-0.5), "threshold=-0.5"),
])
def test_sss_rejects_bad_input(kw, text):
    kw = {**dict(epochs=1, lr=0.05, batch_size=32, progress=False), **kw}
    with pytest.raises(ValueError, match=text):
        sss.sss_prune(tiny_vgg(), tiny_data(), **kw)


def test_sss_rejects_non_vgg_and_plan_rejects_bad_min_channels():
    with pytest.raises(TypeError, match="MLP"):
        sss.sparse_train(lk.models.build("mlp", width=0.1), tiny_data(), lam=0.1, epochs=1, lr=0.1, batch_size=8)
    with pytest.raises(ValueError, match="min_channels=0"):
        sss.plan([torch.ones(3)], min_channels=0)
    assert sss.plan([torch.tensor([0.0, 0.0, 0.0])], min_channels=2)[0].tolist() == [0, 1]


# ---------------------------------------------------------------- metrics and plots

def test_relative_sparsity_counts_removed_and_zeroed_weights():
    m = tiny_vgg()
    assert lk.metrics.relative_sparsity(m, m) == 0.0
    small = lk.prune.shrink_vgg(m, {3: [0, 1]})
    expanded = lk.prune.expand_vgg(small, {3: [0, 1]}, m.channels)
    gone = 14 * 16 * 9 + 14 * 32 * 9  # conv3's 14 removed filters and conv4's 14 dead input channels
    total = sum(x.weight.numel() for x in lk.prune.prunable(m).values())
    assert lk.metrics.relative_sparsity(small, m) == pytest.approx(gone / total)
    assert lk.metrics.relative_sparsity(expanded, m) == pytest.approx(gone / total)


def test_pareto_plot_marks_the_frontier():
    import matplotlib

    matplotlib.use("Agg")
    fig = lk.plots.pareto({"a": ([0.1, 0.5, 0.9], [0.9, 0.8, 0.3]), "b": ([0.5], [0.85])}, "sparsity",
                          lower_is_better=False)
    line = [l for l in fig.axes[0].lines if l.get_label() == "Pareto frontier"][0]
    assert list(line.get_xdata()) == [0.9, 0.5, 0.1]  # (0.5, 0.8) of 'a' is dominated by 'b'


def test_lam_for_shrink_sets_the_total_threshold_budget():
    m = tiny_vgg()
    with torch.no_grad():
        for _, bn in lk.prune.channels.convs(m):
            bn.weight.fill_(-2.0)                      # median |gamma| = 2
    # fit's cosine schedule without warm-up: over 2 steps the full learning rate, then half of it
    assert sss.lam_for_shrink(m, 0.5, steps=2, gate_lr=0.5) == pytest.approx(4 / 3)  # 1 / (0.5*1.5)
    assert sss.lam_for_shrink(m, 0.5, steps=1, gate_lr=0.5) == pytest.approx(2.0)    # 1 / (0.5*1)
    steps = 10   # lr_at(t, 10, 1, 0, 'cosine'): the cosine from t = 0 (peak) towards t = 10 (zero)
    decay = sum(0.5 * (1 + math.cos(math.pi * t / steps)) for t in range(steps))
    assert sss.lam_for_shrink(m, 1.0, steps=steps, gate_lr=0.1) * 0.1 * decay == pytest.approx(2.0)
    for kw, text in ((dict(shrink=0.0, steps=2, gate_lr=0.1), "shrink=0.0"),
                     (dict(shrink=1.0, steps=0, gate_lr=0.1), "steps=0"),
                     (dict(shrink=1.0, steps=-1, gate_lr=0.1), "steps=-1"),
                     (dict(shrink=1.0, steps=5, gate_lr=-1), "gate_lr=-1")):
        with pytest.raises(ValueError, match=text):
            sss.lam_for_shrink(m, kw.pop("shrink"), **kw)


# ---------------------------------------------------------------- SSS is fit plus a proximal hook

def _spy_fit(monkeypatch, record=None):
    """Replace lk.train.fit by a wrapper that keeps each call's keyword arguments
    (returned list) and, with `record`, adds the hook record(model, step) after fit's own."""
    calls, real = [], lk.train.fit

    def fit(model, data, **kw):
        calls.append(kw)
        if record is not None:
            kw = {**kw, "after_step": list(kw["after_step"]) + [record]}
        return real(model, data, **kw)

    monkeypatch.setattr(lk.train, "fit", fit)
    return calls


def test_sparse_train_is_one_fit_call_with_the_proximal_hook(monkeypatch):
    calls = _spy_fit(monkeypatch)
    m = tiny_vgg()
    sss.sparse_train(m, tiny_data(n=64), lam=0.1, epochs=2, lr=0.05, gate_lr=0.5, batch_size=32,
                     progress=False)
    assert len(calls) == 1
    kw = calls[0]
    settings = (kw["schedule"], kw["warmup"], kw["label_smoothing"], kw["nesterov"])
    assert settings == ("cosine", 0.0, 0.0, False)
    (prox,) = kw["after_step"]
    assert isinstance(prox, sss.ProximalStep) and (prox.lam, prox.total) == (0.1, 4)
    (group,) = kw["param_groups"]
    gammas = [bn.weight for _, bn in lk.prune.channels.convs(m)]
    assert [id(p) for p in group["params"]] == [id(g) for g in gammas]
    assert (group["lr_scale"], group["momentum"], group["weight_decay"]) == (10.0, 0.0, 0.0)


def test_a_large_lam_makes_every_factor_exactly_zero():
    m = tiny_vgg()
    found = sss.sparse_train(m, tiny_data(n=96), lam=100.0, epochs=1, lr=0.05, gate_lr=0.5,
                             batch_size=32, progress=False)
    assert all(torch.equal(f, torch.zeros_like(f)) for f in found)
    assert all(torch.equal(bn.weight, torch.zeros_like(bn.weight))
               for _, bn in lk.prune.channels.convs(m))
    # the same hook, called by hand: soft_threshold(gamma, lam * lr at that step)
    m = tiny_vgg()
    prox = sss.ProximalStep(m, lam=2.0, lr=0.25, lr_scale=2.0, total=5)  # lr at step 0: 0.25 * 2
    before = sss.factors(m)
    prox(m, 0)
    after = sss.factors(m)
    for b, a in zip(before, after):
        assert torch.equal(a, sss.soft_threshold(b, 2.0 * 0.5))
    after = torch.cat(after)      # BN weights in [0.5, 1.5], threshold 1: about half reach zero
    assert bool((after == 0).any()) and bool((after != 0).any())


def test_masks_hold_exactly_through_sss_steps():
    m = tiny_vgg()
    masks = lk.prune.prune_global(m, 0.6)
    start = {k: v.detach().clone() for k, v in m.state_dict().items()}
    found = sss.sparse_train(m, tiny_data(n=96), lam=0.5, epochs=2, lr=0.05, gate_lr=1.0,
                             batch_size=32, progress=False)
    assert sum(int((f == 0).sum()) for f in found) > 0          # the proximal step zeroed factors
    modules = dict(m.named_modules())
    for name, keep in masks.items():
        w = modules[name].weight
        assert (~keep).any() and bool((w[~keep] == 0).all()), name        # pruned: exactly zero
        assert not torch.equal(w[keep], start[name + ".weight"][keep]), name  # the rest trained
    assert lk.metrics.global_sparsity(m) == pytest.approx(0.6, abs=1e-3)


def _grads(model, state, x, y):
    """{name: gradient} of the cross-entropy of `model` (loaded with `state`, in
    train mode) on the batch (x, y)."""
    model.load_state_dict(state)
    model.train().zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def test_two_sss_steps_by_hand(monkeypatch):
    monkeypatch.setenv("LABKIT_PRECISION", "fp32")  # the hand computation below runs in fp32
    data = lk.data.load("synthetic-cifar10", train_subset=96, val_size=32)   # batch 32: 3 steps
    m = tiny_vgg()
    states = [{k: v.detach().clone() for k, v in m.state_dict().items()}]
    _spy_fit(monkeypatch, lambda model, step: states.append(
        {k: v.detach().clone() for k, v in model.state_dict().items()}))
    lam, lr, gate_lr, wd = 0.3, 0.05, 0.5, 5e-4
    sss.sparse_train(m, data, lam=lam, epochs=1, lr=lr, gate_lr=gate_lr, batch_size=32, seed=3,
                     weight_decay=wd, progress=False)
    assert len(states) == 4
    loader = data.loader("train", 32, shuffle=True, augment=True, drop_last=True, seed=3,
                         channels_last=True)
    (x0, y0), (x1, y1), _ = list(loader)          # fit's batches: epoch 0 draws from seed 3
    hand = copy.deepcopy(tiny_vgg())
    g0, g1 = _grads(hand, states[0], x0, y0), _grads(hand, states[1], x1, y1)
    scale = [1.0, 0.75]  # lr_at(step, 3, 1, 0, 'cosine') for steps 0, 1: 0.5 (1 + cos(pi step / 3))
    close = dict(rtol=1e-4, atol=1e-6)
    for i in range(8):
        k = f"backbone.bn{i}.weight"  # factors: lr gate_lr * scale, no momentum/decay, then prox
        for t in (0, 1):
            lr_g = gate_lr * scale[t]
            expected = sss.soft_threshold(states[t][k] - lr_g * (g0, g1)[t][k], lam * lr_g)
            torch.testing.assert_close(states[t + 1][k], expected, **close)
    w = "backbone.conv0.weight"         # weights: plain (not Nesterov) momentum and weight decay
    expected = states[0][w] - lr * scale[0] * (g0[w] + wd * states[0][w])
    torch.testing.assert_close(states[1][w], expected, **close)
    b = "backbone.bn0.bias"             # other 1-d parameters: momentum 0.9, no weight decay
    expected = states[1][b] - lr * scale[1] * (g1[b] + 0.9 * g0[b])
    torch.testing.assert_close(states[2][b], expected, **close)


def test_lam_for_shrink_is_the_sum_of_the_thresholds_sparse_train_applies(monkeypatch):
    m, seen = tiny_vgg(), []
    real = sss.soft_threshold
    monkeypatch.setattr(sss, "soft_threshold",
                        lambda x, t, nonneg=False: seen.append(t) or real(x, t, nonneg))
    lam = sss.lam_for_shrink(m, 0.7, steps=6, gate_lr=0.4)
    sss.sparse_train(m, tiny_data(n=96), lam=lam, epochs=2, lr=0.05, gate_lr=0.4, batch_size=32,
                     progress=False)
    per_step = seen[::8]      # one threshold per step, applied to the 8 BatchNorm weights
    assert len(seen) == 6 * 8
    assert all(seen[8 * i:8 * i + 8] == [t] * 8 for i, t in enumerate(per_step))
    median = float(torch.cat([f.abs() for f in sss.factors(tiny_vgg())]).median())
    assert sum(per_step) == pytest.approx(0.7 * median)


def test_sss_divergence_is_fits_training_diverged():
    m = tiny_vgg()
    with torch.no_grad():
        m.classifier.bias[0] = math.nan
    with pytest.raises(lk.train.TrainingDiverged, match="nan at epoch 1, step 1"):
        sss.sparse_train(m, tiny_data(n=64), lam=0.1, epochs=1, lr=0.05, batch_size=32,
                         progress=False)


def test_round_fine_tune_is_one_epoch_with_a_new_seed_each_round():
    """greedy.round_fine_tune (lab 04's per-round fine-tune, also lab 05's): round k is
    train.fine_tune for one epoch at seed + k, so a fresh one replays the same rounds."""
    data, kw = tiny_data(), dict(lr=0.05, batch_size=32, augment=True, progress=False)
    ft, again = greedy.round_fine_tune(data, seed=3, **kw), greedy.round_fine_tune(data, seed=3, **kw)
    ours = [tiny_vgg() for _ in range(4)]
    ft(ours[0]), ft(ours[1]), again(ours[2])
    lk.train.fine_tune(ours[3], data, epochs=1, seed=4, **kw)
    w = [m.backbone.conv0.weight for m in ours]
    assert torch.equal(w[0], w[2]) and torch.equal(w[1], w[3]) and not torch.equal(w[0], w[1])
