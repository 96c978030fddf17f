"""The primitives keep their two rules: masks only grow, and a call either
applies its whole plan or changes nothing (issue 15, "latent defects")."""
import copy
import threading
from collections import OrderedDict

import pytest
import torch
from torch import nn

import labkit as lk
from labkit.methods import schedules
from test_lab04 import tiny_vgg  # VGG at width 1/16 with non-trivial BN statistics


def two_layers(seed=0):
    """Sequential a: Linear(8, 4), b: Linear(4, 8), no biases, |w| all distinct."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(a=nn.Linear(8, 4, bias=False), b=nn.Linear(4, 8, bias=False)))


def small_mlp(seed=0):
    torch.manual_seed(seed)
    return lk.models.build("mlp", width=0.05).eval()




def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def unchanged(model, before):
    after = model.state_dict()
    return set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def step_and_enforce(model):
    """An optimiser-like step that moves every parameter, then the masks again (as train.fit)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    lk.prune.enforce(model)


# ---------------------------------------------------------------- 1. N:M keeps older masks

def test_prune_nm_keeps_weights_pruned_before():
    m = two_layers()
    old = lk.prune.prune_per_tensor(m, 0.75, layers=["a"])["a"].clone()    # 24 of 32 pruned
    new = lk.prune.prune_nm(m, 2, 4, layers=["a"])["a"]
    assert not bool((new & ~old).any()), "prune_nm un-pruned weights"
    assert torch.equal(m.a.weight_mask, new)
    step_and_enforce(m)
    assert int(torch.count_nonzero(m.a.weight)) <= 8                     # the 8 that were live
    assert lk.prune.is_nm(m.a.weight, 2, 4)


def test_prune_nm_keeps_the_n_largest_live_weights_per_group():
    lin = nn.Sequential(nn.Linear(8, 1, bias=False))
    with torch.no_grad():
        lin[0].weight.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]))
    lk.prune.set_mask(lin[0], torch.tensor([[True, False, False, False, False, True, True, True]]))
    mask = lk.prune.prune_nm(lin, 2, 4)["0"]
    # group 1 has one live weight (0.1): it alone stays; group 2 keeps its 2 largest live
    assert mask.flatten().tolist() == [True, False, False, False, False, False, True, True]
    assert lk.prune.nm_mask(lin[0].weight, 2, 4, lin[0].weight_mask).tolist() == mask.tolist()


# ---------------------------------------------------------------- 2. per-tensor plans

def test_prune_per_tensor_checks_masks_only_grow_before_touching_any_layer():
    m = two_layers()
    lk.prune.prune_layer(m, "b", 0.5)
    before = state(m)
    with pytest.raises(ValueError, match=r"'b'.*un-prune"):
        lk.prune.prune_per_tensor(m, {"a": 0.5, "b": 0.3})
    assert unchanged(m, before) and not hasattr(m.a, "weight_mask")


# ---------------------------------------------------------------- 3. rounds_to_reach validates rate

def _call_with_timeout(fn, seconds=20.0):
    """fn() in a daemon thread: ('ok', value), ('raised', exception) or ('hung', None)."""
    out = []

    def target():
        try:
            out.append(("ok", fn()))
        except Exception as e:  # noqa: BLE001 - handed back to the test
            out.append(("raised", e))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    return out[0] if out else ("hung", None)


@pytest.mark.parametrize("rate", [0, 0.0, -0.2, 1.0, 1.5, float("nan")])
def test_rounds_to_reach_rejects_rates_outside_0_1(rate):
    kind, value = _call_with_timeout(lambda: schedules.rounds_to_reach(0.9, rate))
    assert kind == "raised", f"rate={rate!r}: {kind} {value!r}"
    assert isinstance(value, ValueError), repr(value)
    assert repr(float(rate)) in str(value) or repr(rate) in str(value)
    assert "(0, 1)" in str(value)


@pytest.mark.parametrize("rate", ["0.2", None, True])
def test_rounds_to_reach_rejects_non_numbers(rate):
    with pytest.raises(TypeError, match=repr(rate).replace("(", r"\(")):
        schedules.rounds_to_reach(0.9, rate)


def _reference_rounds(sparsity, rate):
    k = 0
    while 1 - (1 - rate) ** k < sparsity - 1e-9:
        k += 1
    return k


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("sparsity", [0.0, 0.2, 0.36, 0.5, 0.9, 0.99])
def test_rounds_to_reach_is_the_fewest_rounds(sparsity, rate):
    k = schedules.rounds_to_reach(sparsity, rate)
    assert k == _reference_rounds(sparsity, rate)
    if k:
        assert schedules.iterative(k, rate)[-1] >= sparsity - 1e-9


def test_rounds_to_reach_rejects_a_rate_too_small_for_floats():
    kind, value = _call_with_timeout(lambda: schedules.rounds_to_reach(0.5, 1e-17))
    assert kind == "raised" and isinstance(value, ValueError), (kind, value)
    assert "rate=1e-17 is too small" in str(value)


def test_rounds_to_reach_returns_for_a_tiny_rate():
    kind, k = _call_with_timeout(lambda: schedules.rounds_to_reach(0.5, 1e-12))
    assert kind == "ok", kind
    rate = 1e-12
    assert 1 - (1 - rate) ** k >= 0.5 - 1e-9 > 1 - (1 - rate) ** (k - 1)


# ---------------------------------------------------------------- 4. unit pruning refuses to shrink

def test_prune_units_refuses_a_lower_sparsity_like_magnitude():
    m = small_mlp()
    lk.prune.prune_units(m, 0.5)
    before = state(m)
    with pytest.raises(ValueError, match=r"'fc1'.*already has \d+ pruned units.*un-prune"):
        lk.prune.prune_units(m, 0.25)
    assert unchanged(m, before)


def test_prune_units_grows_from_what_is_pruned():
    m = small_mlp()
    first = {k: v.clone() for k, v in lk.prune.prune_units(m, 0.5).items()}
    lk.prune.prune_units(m, 0.5)                                   # same sparsity: allowed, a no-op
    second = lk.prune.prune_units(m, 0.75)
    for name, w in ((n, getattr(m, n).weight) for n in lk.prune.hidden_layers(m)):
        assert not bool((second[name] & ~first[name]).any())
        assert int((w.abs().sum(1) == 0).sum()) == round(0.75 * w.shape[0])


@pytest.mark.parametrize("layers", [["fc1", "fc9"], ["fc1", "relu1"]])
def test_prune_units_validates_every_layer_first(layers):
    m = small_mlp()
    before = state(m)
    with pytest.raises((ValueError, TypeError), match=layers[1]):
        lk.prune.prune_units(m, 0.5, layers=layers)
    assert unchanged(m, before)


def test_prune_units_checks_every_layer_before_pruning_any():
    m = small_mlp()
    lk.prune.prune_units(m, 0.5, layers=["fc2"])
    before = state(m)
    with pytest.raises(ValueError, match="'fc2'"):
        lk.prune.prune_units(m, 0.25, layers=["fc1", "fc2"])
    assert unchanged(m, before)


# ---------------------------------------------------------------- 5. shrinking keeps the masks

def _masked_mlp():
    m = small_mlp()
    lk.prune.prune_per_tensor(m, 0.5)
    lk.prune.prune_units(m, 0.5)
    return m


def _linear_names(model):
    return [n for n, x in model.named_children() if isinstance(x, nn.Linear)]


def test_shrink_mlp_carries_the_sliced_masks():
    m = _masked_mlp()
    small, kept = lk.prune.shrink_mlp(m)
    x = torch.randn(16, 1, 28, 28)
    assert torch.allclose(small(x), m(x), atol=1e-5)
    prev = None
    for i, name in enumerate(_linear_names(m)):
        src, dst = getattr(m, name), getattr(small, name)
        rows = kept[i] if i < len(kept) else torch.arange(src.out_features)
        want = src.weight_mask[rows] if prev is None else src.weight_mask[rows][:, prev]
        assert hasattr(dst, "weight_mask"), f"{name} lost its mask"
        assert torch.equal(dst.weight_mask, want), name
        prev = rows
    step_and_enforce(small)
    for name in _linear_names(small):
        layer = getattr(small, name)
        assert int((layer.weight == 0).sum()) == int((~layer.weight_mask).sum()) > 0, name


def test_expand_mlp_keeps_the_small_models_masks():
    m = _masked_mlp()
    small, kept = lk.prune.shrink_mlp(m)
    big = lk.prune.expand_mlp(small, kept, m.hidden)
    x = torch.randn(16, 1, 28, 28)
    assert torch.allclose(big(x), m(x), atol=1e-5)
    for name in _linear_names(m):
        grown = getattr(big, name).weight_mask & ~getattr(m, name).weight_mask
        assert not bool(grown.any()), f"{name}: {int(grown.sum())} weights un-pruned"


def test_shrink_mlp_without_masks_adds_none():
    m = small_mlp()
    with torch.no_grad():
        m.fc1.weight[:3] = 0
    small, _ = lk.prune.shrink_mlp(m)
    assert small.hidden[0] == m.hidden[0] - 3 and not lk.prune.get_masks(small)


KEEP = {1: [0, 2, 3, 5, 6], 3: list(range(0, 16, 2)), 7: list(range(20))}


def test_shrink_vgg_carries_the_sliced_masks():
    m = tiny_vgg()
    lk.prune.prune_global(m, 0.5)
    masked = lk.prune.mask_channels(copy.deepcopy(m), KEEP)
    small = lk.prune.shrink_vgg(m, KEEP).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(small(x), masked(x), atol=1e-5)
    keep = lk.prune.check_keep(m, KEEP)
    full = [keep.get(i, torch.arange(c)) for i, c in enumerate(m.channels)]
    pairs = zip(lk.prune.channels.convs(m), lk.prune.channels.convs(small))
    for i, ((c, _), (sc, _)) in enumerate(pairs):
        want = c.weight_mask[full[i]] if i == 0 else c.weight_mask[full[i]][:, full[i - 1]]
        assert hasattr(sc, "weight_mask") and torch.equal(sc.weight_mask, want), f"conv{i}"
    assert torch.equal(small.classifier.weight_mask, m.classifier.weight_mask[:, full[-1]])
    step_and_enforce(small)
    held = {name: int((~x.weight_mask).sum()) for name, x in lk.prune.prunable(small).items()}
    for name, layer in lk.prune.prunable(small).items():
        assert int((layer.weight == 0).sum()) == held[name], name
    assert sum(held.values()) > 0


def test_expand_vgg_keeps_the_small_models_masks():
    m = tiny_vgg()
    lk.prune.prune_global(m, 0.5)
    masked = lk.prune.mask_channels(copy.deepcopy(m), KEEP)
    big = lk.prune.expand_vgg(lk.prune.shrink_vgg(m, KEEP), KEEP, m.channels).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(big(x), masked(x), atol=1e-5)
    for name, layer in lk.prune.prunable(masked).items():
        grown = getattr(big.get_submodule(name), "weight_mask") & ~layer.weight_mask
        assert not bool(grown.any()), f"{name}: {int(grown.sum())} weights un-pruned"


# ---------------------------------------------------------------- further entry points

def test_set_mask_refuses_to_un_prune():
    m = two_layers()
    lk.prune.prune_layer(m, "a", 0.5)
    before = state(m)
    with pytest.raises(ValueError, match=r"un-prune 16 weights"):
        lk.prune.set_mask(m.a, torch.ones(4, 8, dtype=torch.bool))
    assert unchanged(m, before)
    fewer = m.a.weight_mask.clone()
    fewer[0] = False
    lk.prune.set_mask(m.a, fewer)                                   # growing is fine
    assert torch.equal(m.a.weight_mask, fewer)


def test_rewind_checks_every_shape_before_copying():
    m = small_mlp()
    snap = schedules.snapshot(m)
    step_and_enforce(m)
    before = state(m)
    bad = dict(snap)
    last = list(bad)[-1]
    bad[last] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=last):
        schedules.rewind(m, bad)
    assert unchanged(m, before)
