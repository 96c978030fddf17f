"""Lab 02: VGG parameter count, channel pruning (uniform plan, sorting,
physical = masked), sensitivity scan restores the model, the per-layer
sparsity planner, the iterate rule, and bad inputs."""
import copy

import pytest
import torch

import labkit as lk
from labkit.prune import channels


def _vgg(width=0.125, seed=0):
    """A small VGG in eval mode with non-trivial BN statistics and affine params,
    so channels differ in importance and BN's bias matters."""
    torch.manual_seed(seed)
    m = lk.models.build("vgg", width=width).eval()
    with torch.no_grad():
        for _, bn in channels.convs(m):
            bn.running_mean.normal_(0, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_(1, 0.3)
            bn.bias.normal_(0, 0.3)
    return m


X = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_vgg_width1_params():
    m = lk.models.build("vgg", width=1.0)
    assert lk.metrics.count_params(m) == 9_228_362
    assert lk.metrics.size_table(m)["dense_mib"] == pytest.approx(35.20, abs=0.005)


def test_channel_prune_ratio0_is_identity():
    m = _vgg()
    small = lk.prune.channel_prune(m, 0.0)
    assert small.channels == m.channels
    assert lk.metrics.count_params(small) == lk.metrics.count_params(m)
    with torch.no_grad():
        assert torch.equal(small(X), m(X))


def test_uniform_keep_counts_and_last_conv_kept():
    m = _vgg()
    keep = lk.prune.uniform_keep(m, 0.3)
    n = len(m.channels)
    assert sorted(keep) == list(range(n - 1))          # every conv but the last
    for i, idx in keep.items():
        assert idx.tolist() == list(range(round(m.channels[i] * 0.7)))  # naive: the first k
    small = lk.prune.channel_prune(m, 0.3)
    assert small.channels[:-1] == tuple(round(c * 0.7) for c in m.channels[:-1])
    assert small.channels[-1] == m.channels[-1]
    assert lk.metrics.count_params(small) < lk.metrics.count_params(m)


def test_sorting_is_equivalent():
    m = _vgg()
    s = lk.prune.sort_channels(m)
    with torch.no_grad():
        torch.testing.assert_close(s(X), m(X), rtol=1e-4, atol=1e-5)
    # it really reordered something, most important first
    assert any(not torch.equal(a.weight, b.weight) for (a, _), (b, _) in zip(channels.convs(m), channels.convs(s)))
    for i in range(len(m.channels) - 1):
        assert torch.equal(lk.prune.l2_ranking(s, i), torch.arange(s.channels[i]))
    # m itself is untouched
    assert torch.equal(m.backbone.conv0.weight, _vgg().backbone.conv0.weight)


def test_sorted_pruning_keeps_most_important():
    m = _vgg()
    small = lk.prune.channel_prune(m, 0.5, sort=True)
    k = round(m.channels[0] * 0.5)
    top = lk.prune.l2_ranking(m, 0)[:k]
    ref = lk.prune.shrink_vgg(m, {0: top.sort().values, **{i: lk.prune.l2_ranking(m, i)[:round(c * 0.5)].sort().values
                                                         for i, c in enumerate(m.channels[:-1]) if i > 0}})
    with torch.no_grad():  # same channels kept (in another order): same function
        torch.testing.assert_close(small(X), ref(X), rtol=1e-4, atol=1e-5)


def test_physical_equals_masked_on_kept_channels():
    m = _vgg()
    keep = lk.prune.uniform_keep(m, 0.4)
    small = lk.prune.shrink_vgg(m, keep)
    masked = lk.prune.mask_channels(copy.deepcopy(m), keep)
    with torch.no_grad():
        torch.testing.assert_close(small(X), masked(X), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(small(X), m(X))  # pruning did change the function


def test_scan_restores_model_exactly():
    m = _vgg()
    lk.prune.prune_layer(m, "backbone.conv3", 0.3)     # one layer already masked
    before = {k: v.clone() for k, v in m.state_dict().items()}
    evaluate = lambda model: float(model(X[:2]).sum())
    curves = lk.sensitivity.scan(m, lk.prune.prune_layer, [0.4, 0.8], evaluate, progress=False)
    after = m.state_dict()
    assert set(after) == set(before)
    for k in before:
        assert torch.equal(after[k], before[k]), k
    assert set(curves) == set(lk.prune.prunable(m)) and all(len(v) == 2 for v in curves.values())
    assert len(set(v[1] for v in curves.values())) > 1   # the scan did prune


def _fake_curves(model, sparsities):
    """Layers with different, made-up sensitivities (later layers more robust)."""
    names = list(lk.prune.prunable(model))
    return {n: [0.9 - 0.5 * s ** (1 + i) for s in sparsities] for i, n in enumerate(names)}


@pytest.mark.parametrize("target", [0.5, 0.25, 0.12])
def test_planner_hits_size_target(target):
    m = _vgg()
    sp = [0.2, 0.4, 0.6, 0.8, 0.9, 0.95]
    curves = _fake_curves(m, sp)
    plan = lk.sensitivity.plan_for_size(m, curves, sp, target, baseline=0.9)
    assert set(plan) == set(curves) and all(0 <= s <= 0.95 for s in plan.values())
    pruned = copy.deepcopy(m)
    lk.prune.prune_per_tensor(pruned, plan)
    size = lk.metrics.count_nonzero(pruned) / lk.metrics.count_params(pruned)
    assert abs(size - target) <= 0.01
    assert lk.sensitivity.plan_size(m, plan) == pytest.approx(size, abs=1e-9)


def test_planner_prefers_robust_layers():
    m = _vgg()
    sp = [0.2, 0.4, 0.6, 0.8, 0.9]
    names = list(lk.prune.prunable(m))
    fragile, robust = "backbone.conv5", "backbone.conv6"   # equal sizes at any width
    curves = {n: [0.9 - 0.5 * s for s in sp] for n in names}
    curves[fragile] = [0.9 - 0.8 * s for s in sp]
    curves[robust] = [0.9 - 0.05 * s for s in sp]
    plan = lk.sensitivity.plan_for_size(m, curves, sp, 0.5, baseline=0.9)
    assert plan[robust] > plan[fragile]
    # fewer predicted losses than pruning every layer to the same sparsity of equal size
    s_uni = lk.sensitivity.plan_for_size(m, {n: [0.9 - 0.5 * s for s in sp] for n in names}, sp, 0.5, 0.9)
    same = {n: max(s_uni.values()) for n in names}
    assert lk.sensitivity.predicted_drop(curves, sp, plan, 0.9) <= lk.sensitivity.predicted_drop(curves, sp, same, 0.9)


def test_planner_unreachable_target_and_bad_inputs():
    m = _vgg()
    sp = [0.2, 0.5]
    curves = _fake_curves(m, sp)
    with pytest.raises(ValueError, match="out of reach"):
        lk.sensitivity.plan_for_size(m, curves, sp, 0.1, baseline=0.9)
    with pytest.raises(ValueError, match="target"):
        lk.sensitivity.plan_for_size(m, curves, sp, 0.0, baseline=0.9)
    with pytest.raises(ValueError, match="no_such_layer"):
        lk.sensitivity.plan_for_size(m, {"no_such_layer": [0.5, 0.4]}, sp, 0.8, baseline=0.9)
    with pytest.raises(ValueError, match="no_such_layer"):
        lk.sensitivity.plan_size(m, {"no_such_layer": 0.5})


def test_scale_plan_keeps_shape_and_hits_target():
    m = _vgg()
    hand = {"backbone.conv3": 0.5, "backbone.conv4": 0.6, "backbone.conv5": 0.8, "backbone.conv6": 0.85,
            "backbone.conv7": 0.9}
    base = lk.sensitivity.plan_size(m, hand)
    for target in (0.8 * base, 0.5 * base):
        plan = lk.sensitivity.scale_plan(m, hand, target)
        assert lk.sensitivity.plan_size(m, plan) == pytest.approx(target, abs=1e-3)
        u = [(plan[n] - s) / (1 - s) for n, s in hand.items()]   # one common further fraction
        assert max(u) - min(u) < 1e-4
    grown = lk.sensitivity.scale_plan(m, hand, 1.3 * base)     # larger than the hand plan: scaled down
    assert lk.sensitivity.plan_size(m, grown) == pytest.approx(1.3 * base, abs=1e-3)
    r = [grown[n] / s for n, s in hand.items()]
    assert max(r) - min(r) < 1e-4 and r[0] < 1
    with pytest.raises(ValueError, match="out of reach"):
        lk.sensitivity.scale_plan(m, hand, 0.01)


def test_iterate_rule():
    assert lk.sensitivity.iterate_sparsity(0.5, 0.5) == 0.75
    assert lk.sensitivity.iterate_sparsity(0.0, 0.3) == pytest.approx(0.3)
    assert lk.sensitivity.iterate_sparsity(0.9, 0.0) == 0.9
    betas = [0.1, 0.3, 0.5]
    got = lk.sensitivity.choose_betas({"a": [0.9, 0.895, 0.7], "b": [0.5, 0.4, 0.3]}, betas, 0.9, 0.01)
    assert got == {"a": 0.3, "b": 0.0}
    with pytest.raises(ValueError, match="beta"):
        lk.sensitivity.iterate_sparsity(0.5, 1.0)
    with pytest.raises(ValueError, match="previous"):
        lk.sensitivity.iterate_sparsity(-0.1, 0.2)


@pytest.mark.parametrize("ratio, err, match", [
    (1.0, ValueError, r"ratio=1\.0"),
    (1.5, ValueError, r"ratio=1\.5"),
    (-0.1, ValueError, r"ratio=-0\.1"),
    (float("nan"), ValueError, "ratio"),
    ("0.5", TypeError, "ratio"),
    ({"backbone.conv99": 0.5}, ValueError, "conv99"),
    ({"classifier": 0.5}, ValueError, "classifier"),
    ({"backbone.conv2": 1.0}, ValueError, "conv2"),
])
def test_channel_prune_bad_inputs(ratio, err, match):
    m = _vgg()
    with pytest.raises(err, match=match):
        lk.prune.channel_prune(m, ratio)


def test_channel_prune_per_layer_dict_and_non_vgg():
    m = _vgg()
    small = lk.prune.channel_prune(m, {"backbone.conv1": 0.5, "conv7": 0.25})
    expect = list(m.channels)
    expect[1], expect[7] = round(m.channels[1] * 0.5), round(m.channels[7] * 0.75)
    assert small.channels == tuple(expect)
    with pytest.raises(TypeError, match="VGG"):
        lk.prune.channel_prune(lk.models.build("mlp", width=0.1), 0.5)
    tiny = lk.models.VGG(channels=(1, 2, 2, 2, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="remove all"):
        lk.prune.channel_prune(tiny, 0.6)


def test_fine_grained_plan_bad_layer():
    m = _vgg()
    with pytest.raises(ValueError, match="no_such_layer"):
        lk.prune.prune_per_tensor(m, {"no_such_layer": 0.5})


def test_compare_latency_names_and_bad_rounds():
    m = _vgg(width=0.0625)
    small = lk.prune.channel_prune(m, 0.5)
    lat = lk.metrics.compare_latency({"dense": m, "small": small}, (3, 32, 32), rounds=1, threads=1,
                                     min_run_time=0.01)
    assert set(lat) == {"dense", "small"} and all(0 < v < float("inf") for v in lat.values())
    with pytest.raises(ValueError, match="rounds"):
        lk.metrics.compare_latency({"dense": m}, (3, 32, 32), rounds=0)
