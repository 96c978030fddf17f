"""Counts, size accounting, MACs and latency on models whose answers are known by hand."""
import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import labkit as lk
from labkit.metrics import MIB


def test_param_counts_of_the_three_models():
    assert lk.metrics.count_params(lk.models.build("mlp")) == 784 * 1000 + 1000 * 1000 + 1000 * 500 + 500 * 200 + 200 * 10
    assert lk.metrics.count_params(lk.models.build("vgg")) == 9_228_362
    assert lk.metrics.count_params(lk.models.build("resnet18")) == 11_173_962


def test_vgg_dense_mib_is_35_20():
    assert round(lk.metrics.size_table(lk.models.build("vgg"))["dense_mib"], 2) == 35.20


def test_size_table_by_hand():
    m = nn.Sequential(nn.Linear(8, 4, bias=True))
    with torch.no_grad():
        m[0].weight.zero_()
        m[0].weight[0, :3] = 1.0   # 3 nonzeros in row 0
        m[0].weight[2, 7] = 2.0    # 1 nonzero in row 2
        m[0].bias.fill_(1.0)
    t = lk.metrics.size_table(m)
    assert t["dense_mib"] == pytest.approx(36 * 4 / MIB)
    assert t["nonzero_mib"] == pytest.approx(8 * 4 / MIB)          # 4 weights + 4 biases
    assert t["csr_mib"] == pytest.approx((4 * 4 + 4 * 4 + 5 * 4 + 4 * 4) / MIB)  # vals, cols, rowptr, bias
    assert t["bitmask_mib"] == pytest.approx((4 * 4 + 4 + 4 * 4) / MIB)          # vals, 32 bits, bias
    assert t["physical_mib"] == t["dense_mib"] and t["gzip_mib"] > 0


def test_physical_vs_reference():
    big = lk.models.build("mlp", width=0.1)
    small = lk.models.MLP(hidden=(10, 10, 5, 2))
    t = lk.metrics.size_table(small, reference=big)
    assert t["dense_mib"] == pytest.approx(lk.metrics.count_params(big) * 4 / MIB)
    assert t["physical_mib"] == pytest.approx(lk.metrics.count_params(small) * 4 / MIB)


def test_macs_linear_and_conv_by_hand():
    m = nn.Sequential(nn.Linear(10, 5, bias=False))
    assert lk.metrics.macs(m, (10,)) == dict(macs=50, nonzero_macs=50)
    lk.prune.prune_layer(m, "0", 0.4)
    assert lk.metrics.macs(m, (10,)) == dict(macs=50, nonzero_macs=30)
    c = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False))
    assert lk.metrics.macs(c, (3, 8, 8))["macs"] == 4 * 3 * 9 * 8 * 8


def test_gzip_excludes_masks():
    m = lk.models.build("mlp", width=0.05)
    lk.prune.prune_per_tensor(m, 0.5)
    with_masks = lk.metrics.gzip_bytes(m)
    lk.prune.remove_masks(m)
    assert lk.metrics.gzip_bytes(m) == with_masks


def test_latency_and_measure_fields():
    m = lk.models.build("mlp", width=0.05)
    out = lk.metrics.measure(m, (1, 28, 28))
    for key in ("params", "nonzeros", "sparsity", "dense_mib", "nonzero_mib", "csr_mib", "bitmask_mib",
                "gzip_mib", "physical_mib", "macs", "nonzero_macs", "latency_cpu_ms"):
        assert key in out
    assert out["latency_cpu_ms"] > 0 and out["sparsity"] == 0.0


def test_compiled_latency_compiles_every_model_even_past_dynamos_recompile_limit():
    limit = torch._dynamo.config.recompile_limit
    models = {f"m{i}": lk.models.build("mlp", width=0.02) for i in range(limit + 1)}  # one code object, 9 copies
    counters.clear()
    ms = lk.metrics.compare_latency(models, (1, 28, 28), rounds=1, min_run_time=0.01, compile=True)
    assert set(ms) == set(models) and all(0 < v < float("inf") for v in ms.values())
    assert counters["stats"]["unique_graphs"] == len(models)   # none fell back to eager
    assert lk.metrics.latency(models["m0"], (1, 28, 28), min_run_time=0.01, compile=True) > 0


def test_measure_options_cover_removed_disk_csr_and_the_reference_side_by_side():
    big = lk.models.build("mlp", width=0.1)                       # 784-100-100-50-20-10
    small = lk.models.MLP(hidden=(10, 10, 5, 2))
    lk.prune.prune_global(small, 0.5)
    out = lk.metrics.measure(small, (1, 28, 28), reference=big, disk=True, csr=True,
                             time_reference=True, min_run_time=0.01)
    kept = 784 * 10 + 10 * 10 + 10 * 5 + 5 * 2 + 2 * 10
    assert out["removed"] == pytest.approx(1 - kept / (784 * 100 + 100 * 100 + 100 * 50 + 50 * 20 + 20 * 10))
    assert out["sparsity"] == pytest.approx(0.5, abs=1e-3)        # zeros among the remaining weights
    assert out["disk_best_mib"] == pytest.approx(lk.metrics.disk_mib(small), rel=0) and out["disk_best_mib"] > 0
    assert out["latency_threads"] is None and out["latency_dense_ms"] > 0 and out["latency_csr_ms"] > 0
    assert out["latency_best_ms"] == min(out["latency_cpu_ms"], out["latency_csr_ms"])
    plain = lk.metrics.measure(small, (1, 28, 28), timing=False)
    assert not {"removed", "disk_best_mib", "latency_cpu_ms", "latency_dense_ms"} & set(plain)
    vgg = lk.metrics.measure(lk.models.build("vgg", width=0.0625), (3, 32, 32), csr=True, min_run_time=0.01)
    assert "latency_csr_ms" not in vgg and vgg["latency_best_ms"] == vgg["latency_cpu_ms"]


def test_measure_times_with_torch_threads_unless_told_and_passes_rounds(monkeypatch):
    """measure's timing keeps latency's defaults (torch's threads) and hands `rounds` on."""
    seen = []
    monkeypatch.setattr(lk.metrics, "latency", lambda m, shape, **kw: seen.append(kw) or 1e-3)
    model = lk.models.build("mlp", width=0.05)
    row = lk.metrics.measure(model, (1, 28, 28))
    assert seen[-1]["threads"] is None and seen[-1]["rounds"] == 1 and row["latency_threads"] is None
    lk.metrics.measure(model, (1, 28, 28), threads=1, rounds=3)
    assert seen[-1]["threads"] == 1 and seen[-1]["rounds"] == 3
