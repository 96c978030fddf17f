"""Magnitude and unit pruning: exact sparsity, masks that hold, physical removal."""
import copy
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import labkit as lk


def small_mlp():
    return lk.models.build("mlp", width=0.05)


@pytest.mark.parametrize("s", [0.0, 0.25, 0.5, 0.7, 0.9, 0.95, 0.99])
def test_per_tensor_exact_zeros(s):
    m = small_mlp()
    lk.prune.prune_per_tensor(m, s)
    for name, layer in lk.prune.prunable(m).items():
        n = layer.weight.numel()
        assert int((layer.weight == 0).sum()) == round(s * n), name
        assert int((~layer.weight_mask).sum()) == round(s * n)


@pytest.mark.parametrize("n,s", [(10, 0.25), (10, 0.35), (10, 0.05), (3, 0.5), (7, 0.5), (1, 0.5)])
def test_round_edge_cases(n, s):
    lin = nn.Sequential(nn.Linear(n, 1, bias=False))
    nn.init.uniform_(lin[0].weight, 0.1, 1.0)
    lk.prune.prune_layer(lin, "0", s)
    assert int((lin[0].weight == 0).sum()) == round(s * n) == lk.prune.n_zeros(s, n)


def test_per_tensor_removes_smallest():
    lin = nn.Sequential(nn.Linear(6, 1, bias=False))
    with torch.no_grad():
        lin[0].weight.copy_(torch.tensor([[0.5, -0.1, 0.3, -0.9, 0.05, 0.2]]))
    lk.prune.prune_layer(lin, "0", 0.5)
    assert lin[0].weight.flatten().tolist() == pytest.approx([0.5, 0, 0.3, -0.9, 0, 0])


@pytest.mark.parametrize("s", [0.1, 0.5, 0.8, 0.97])
def test_global_exact_zeros(s):
    m = small_mlp()
    lk.prune.prune_global(m, s)
    total = sum(l.weight.numel() for l in lk.prune.prunable(m).values())
    zeros = sum(int((l.weight == 0).sum()) for l in lk.prune.prunable(m).values())
    assert zeros == round(s * total)
    assert lk.prune.global_sparsity(m) == pytest.approx(round(s * total) / total)


def test_global_is_global_not_per_layer():
    m = nn.Sequential(nn.Linear(10, 10, bias=False), nn.Linear(10, 10, bias=False))
    with torch.no_grad():
        m[0].weight.fill_(0.01)
        m[1].weight.fill_(1.0)
    lk.prune.prune_global(m, 0.5)
    assert int((m[0].weight == 0).sum()) == 100 and int((m[1].weight == 0).sum()) == 0


def test_iterative_keeps_old_zeros_and_refuses_to_unprune():
    m = small_mlp()
    first = {k: v.clone() for k, v in lk.prune.prune_global(m, 0.5).items()}
    second = lk.prune.prune_global(m, 0.8)
    for k in first:
        assert bool((second[k] <= first[k]).all())  # kept set only shrinks
    with pytest.raises(ValueError, match="un-prune"):
        lk.prune.prune_global(m, 0.3)


def test_masks_hold_through_optimizer_steps():
    m = small_mlp()
    lk.prune.prune_per_tensor(m, 0.8)
    data = lk.data.load("synthetic-mnist")
    lk.train.fine_tune(m, data, epochs=1, lr=0.1, batch_size=64, weight_decay=5e-4)
    for layer in lk.prune.prunable(m).values():
        assert bool((layer.weight[~layer.weight_mask] == 0).all())
        assert int((layer.weight == 0).sum()) >= int((~layer.weight_mask).sum())


def test_masks_hold_after_every_step(monkeypatch):
    """Check after each optimiser step, not only at the end."""
    m = small_mlp()
    lk.prune.prune_global(m, 0.9)
    seen = []
    real_step = torch.optim.SGD.step

    def step(self, *a, **k):
        out = real_step(self, *a, **k)
        seen.append(m)
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    data = lk.data.load("synthetic-mnist")
    checks = []
    orig_mul = torch._foreach_mul_

    def mul(ws, ms):
        orig_mul(ws, ms)
        checks.append(all(bool((w[mk == 0] == 0).all()) for w, mk in zip(ws, ms)))

    monkeypatch.setattr(torch, "_foreach_mul_", mul)
    lk.train.fit(m, data, epochs=1, lr=0.5, batch_size=256, progress=False)
    assert len(checks) == len(seen) > 5 and all(checks)


@pytest.mark.parametrize("s", [0.25, 0.5, 0.9])
def test_unit_pruning_zero_rows_and_physical_equality(s):
    m = small_mlp().eval()
    lk.prune.prune_units(m, s)
    for name in lk.prune.hidden_layers(m):
        w = getattr(m, name).weight
        assert int((w.abs().sum(1) == 0).sum()) == round(s * w.shape[0])
    small, kept = lk.prune.shrink_mlp(m)
    assert lk.metrics.count_params(small) < lk.metrics.count_params(m)
    x = torch.randn(32, 1, 28, 28)
    assert torch.allclose(small(x), m(x), atol=1e-5)
    big = lk.prune.expand_mlp(small, kept, m.hidden)
    assert torch.allclose(big(x), m(x), atol=1e-5)
    for name in lk.prune.hidden_layers(m):  # kept weights written back unchanged
        keep = getattr(big, name).weight_mask
        assert torch.equal(getattr(big, name).weight[keep], getattr(m, name).weight[keep])


def test_unit_pruning_ranks_by_l2_norm():
    m = lk.models.MLP(hidden=(4,), in_features=3, num_classes=2)
    with torch.no_grad():
        m.fc1.weight.copy_(torch.tensor([[3., 0, 0], [0.1, 0.1, 0.1], [1, 1, 1], [0, 0, 0.5]]))
    lk.prune.prune_units(m, 0.5)
    assert (m.fc1.weight.abs().sum(1) > 0).tolist() == [True, False, True, False]


def test_sweep_leaves_model_untouched():
    m = small_mlp()
    before = copy.deepcopy(m.state_dict())
    lk.sensitivity.sweep(m, lambda mm, s: lk.prune.prune_per_tensor(mm, s), [0.5, 0.9],
                         lambda mm: 0.0, progress=False)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert not lk.prune.get_masks(m)


# ---------------------------------------------------------------- max_difference (contract F)

def test_max_difference_is_zero_for_equal_models_and_restores_training_modes():
    m = small_mlp()
    twin = copy.deepcopy(m).eval()
    m.train()
    m.fc2.eval()                                        # a mixed mode must come back as it was
    x = torch.randn(8, 1, 28, 28)
    assert lk.prune.max_difference(m, twin, x) == 0.0
    assert m.training and not m.fc2.training and m.fc1.training and not twin.training


def test_max_difference_of_small_models_and_their_masked_originals():
    m = small_mlp()
    lk.prune.prune_units(m, 0.5)
    small, _ = lk.prune.shrink_mlp(m)
    assert lk.prune.max_difference(small, m, torch.randn(16, 1, 28, 28)) < 1e-5
    torch.manual_seed(0)
    vgg = lk.models.build("vgg", width=0.0625).train()
    with torch.no_grad():
        for _, bn in lk.prune.channels.convs(vgg):      # BN statistics that are not the identity
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.5, 0.5)
    keep = lk.prune.uniform_keep(vgg, 0.5)
    masked = lk.prune.mask_channels(copy.deepcopy(vgg), keep)
    small = lk.prune.shrink_vgg(vgg, keep)
    before = {k: v.clone() for k, v in masked.state_dict().items()}
    assert lk.prune.max_difference(small, masked, torch.randn(4, 3, 32, 32)) < 1e-5
    assert small.training and masked.training               # modes back, BN statistics unchanged
    assert all(torch.equal(before[k], v) for k, v in masked.state_dict().items())


def test_max_difference_sees_a_perturbed_model_and_mismatched_outputs():
    m = small_mlp()
    other = copy.deepcopy(m)
    with torch.no_grad():
        other.fc3.weight[0, 0] += 1.0
    x = torch.randn(8, 1, 28, 28)
    assert lk.prune.max_difference(m, other, x) > 0
    with pytest.raises(ValueError, match=r"\(8, 10\).*\(8, 3\)"):
        lk.prune.max_difference(m, lk.models.MLP(hidden=(4,), num_classes=3), x)


# ---------------------------------------------------------------- the 2:4 GPU benchmark

def test_semi_structured_benchmark_skips_cleanly_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark measures instead")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "semi_structured.py"
    assert runpy.run_path(str(script))["semi_structured_latency"]() is None
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "skipped: no CUDA device" in out.stdout, out.stderr
