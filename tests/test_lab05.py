"""Lab 05: sparse file format, CSR inference, 2:4 pruning, aggregation over seeds."""
import math

import pytest
import torch

import labkit as lk
import labkit.sparse as sp


def _state(model):
    return lk.prune.weight_state(model)


def _same_state(a, b):
    sa, sb = _state(a), _state(b)
    return sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


# ---------------------------------------------------------------- sparse file format

@pytest.mark.parametrize("fmt", ["csr", "bitmask", "dense", "best"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.97])
def test_sparse_save_load_round_trips_the_mlp_exactly(tmp_path, fmt, sparsity):
    model = lk.models.build("mlp", width=0.1)
    lk.prune.prune_per_tensor(model, sparsity)
    info = sp.save(model, tmp_path / "m.lks", fmt)
    assert info["bytes"] == (tmp_path / "m.lks").stat().st_size
    back = sp.load(lk.models.build("mlp", width=0.1), tmp_path / "m.lks")
    assert _same_state(model, back)


def test_sparse_round_trip_vgg_with_bn_buffers_and_masks(tmp_path):
    model = lk.models.build("vgg", width=0.0625)
    model.train()(torch.randn(4, 3, 32, 32))          # nonzero running stats
    lk.prune.prune_global(model, 0.8)
    with torch.no_grad():
        model.backbone.conv3.weight[0, 0, 0, 0] = 0.0  # a zero inside a kept row
    sp.save(model, tmp_path / "v.lks", "csr")
    fresh = lk.models.build("vgg", width=0.0625)
    back = sp.load(fresh, tmp_path / "v.lks", masks=True)
    assert _same_state(model, back)
    assert torch.equal(back.backbone.bn2.running_var, model.backbone.bn2.running_var)
    assert int(back.backbone.bn0.num_batches_tracked) == 1
    assert torch.equal(back.backbone.conv3.weight_mask, back.backbone.conv3.weight != 0)


def test_empty_rows_and_all_zero_layer_round_trip(tmp_path):
    model = lk.models.build("mlp", width=0.05)
    with torch.no_grad():
        model.fc2.weight.zero_()
        model.fc1.weight[:3] = 0
    for fmt in ("csr", "bitmask"):
        sp.save(model, tmp_path / f"{fmt}.lks", fmt)
        assert _same_state(model, sp.load(lk.models.build("mlp", width=0.05), tmp_path / f"{fmt}.lks"))


def test_best_format_per_tensor_and_disk_matches_theory(tmp_path):
    model = lk.models.build("mlp", width=0.25)
    lk.prune.prune_per_tensor(model, 0.9)
    rep = lk.metrics.disk_report(model)
    # the MLP has no buffers: on disk = theory + a small header only
    for fmt in ("csr", "bitmask", "dense"):
        extra = (rep[f"{fmt}_disk_mib"] - rep[f"{fmt}_mib"]) * 2 ** 20
        assert 0 < extra < 4096, (fmt, extra)
    assert rep["best_disk_mib"] <= min(rep["csr_disk_mib"], rep["bitmask_disk_mib"], rep["dense_disk_mib"])
    dense = lk.models.build("mlp", width=0.25)
    assert set(sp.save(dense, tmp_path / "d.lks", "best")["formats"].values()) == {"dense"}


def test_pack_bits_inverse():
    mask = torch.rand(1003) > 0.6
    packed = sp.pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(1003 / 8)
    assert torch.equal(sp.unpack_bits(packed, 1003), mask)


def test_corrupt_or_foreign_files_are_rejected(tmp_path):
    model = lk.models.build("mlp", width=0.05)
    path = sp.save(model, tmp_path / "m.lks", "csr")["path"]
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    (tmp_path / "bad.lks").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        sp.read(tmp_path / "bad.lks")
    (tmp_path / "trunc.lks").write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        sp.read(tmp_path / "trunc.lks")
    (tmp_path / "other.pt").write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(ValueError, match="not a labkit sparse file"):
        sp.read(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="shape"):
        sp.load(lk.models.build("mlp", width=0.1), path)
    with pytest.raises(ValueError, match="fmt='coo'"):
        sp.save(model, tmp_path / "x.lks", "coo")


# ---------------------------------------------------------------- CSR inference

@pytest.mark.parametrize("sparsity", [0.0, 0.9, 0.99])
def test_csr_model_gives_the_dense_outputs(sparsity):
    model = lk.models.build("mlp", width=0.25).eval()
    if sparsity:
        lk.prune.prune_per_tensor(model, sparsity)
    x = torch.randn(7, 1, 28, 28)
    csr = sp.to_csr(model)
    assert all(isinstance(getattr(csr, f"fc{i}"), sp.CSRLinear) for i in range(1, 6))
    with torch.no_grad():
        torch.testing.assert_close(csr(x), model(x), rtol=1e-4, atol=1e-5)


def test_csr_linear_with_bias_and_bad_input():
    lin = torch.nn.Linear(12, 5)
    with torch.no_grad():
        lin.weight[lin.weight.abs() < 0.1] = 0
    csr = sp.CSRLinear(lin)
    x = torch.randn(3, 12)
    torch.testing.assert_close(csr(x), lin(x).detach(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        csr(torch.randn(3, 11))
    with pytest.raises(TypeError, match="Conv2d"):
        sp.CSRLinear(torch.nn.Conv2d(3, 4, 3))


def test_csr_study_rows_and_crossover():
    rows = lk.metrics.csr_study(lk.models.build("mlp", width=0.05), (1, 28, 28), [0.0, 0.9], batches=(1, 4),
                        min_run_time=0.01)
    assert [(r["sparsity"], r["batch"]) for r in rows] == [(0.0, 1), (0.0, 4), (0.9, 1), (0.9, 4)]
    assert all(r["dense_ms"] > 0 and r["csr_ms"] > 0 for r in rows)
    hand = [dict(sparsity=s, batch=1, speedup=v) for s, v in ((0.5, 0.3), (0.9, 1.2), (0.95, 0.9), (0.99, 3.0))]
    assert lk.metrics.crossover(hand, 1) == 0.99            # must stay faster from there on
    hand[2]["speedup"] = 1.5
    assert lk.metrics.crossover(hand, 1) == 0.9
    assert lk.metrics.crossover([dict(sparsity=0.5, batch=1, speedup=0.5)], 1) is None
    with pytest.raises(ValueError, match="batch=256"):
        lk.metrics.crossover(hand, 256)
    with pytest.raises(ValueError, match="batches"):
        lk.metrics.csr_study(lk.models.build("mlp", width=0.05), (1, 28, 28), [0.5], batches=(0,))
    with pytest.raises(ValueError, match="1.5"):
        lk.metrics.csr_study(lk.models.build("mlp", width=0.05), (1, 28, 28), [1.5])


# ---------------------------------------------------------------- 2:4

def _groups_linear(w, m=4):
    return (w != 0).reshape(w.shape[0], -1, m)


def test_two_four_masks_have_exactly_two_zeros_per_group_of_four():
    torch.manual_seed(1)
    model = lk.models.build("mlp", width=0.2)          # input dims 784, 200, 200, 100, 40
    masks = lk.prune.prune_nm(model)
    assert set(masks) == {"fc1", "fc2", "fc3", "fc4", "fc5"}
    for name, mask in masks.items():
        per_group = (~mask).reshape(mask.shape[0], -1, 4).sum(-1)
        assert bool((per_group == 2).all()), name
        assert torch.equal(getattr(model, name).weight_mask, mask)
        # the kept two are the two largest |w| of the group
        w = getattr(model, name).weight.detach()
        assert lk.prune.is_nm(w)
    assert abs(lk.prune.global_sparsity(model) - 0.5) < 1e-9


def test_two_four_conv_groups_along_input_channels_and_keeps_the_largest():
    conv = torch.nn.Conv2d(8, 2, 3, bias=False)
    mask = lk.prune.nm_mask(conv.weight)
    groups = mask.permute(0, 2, 3, 1).reshape(-1, 4)
    assert bool(((~groups).sum(1) == 2).all())
    w = conv.weight.detach().abs().permute(0, 2, 3, 1).reshape(-1, 4)
    kept_min = torch.where(groups, w, torch.full_like(w, float("inf"))).min(1).values
    dropped_max = torch.where(~groups, w, torch.full_like(w, -1.0)).max(1).values
    assert bool((kept_min >= dropped_max).all())


def test_two_four_skips_rgb_conv_by_default_and_rejects_it_by_name():
    model = lk.models.build("vgg", width=0.125)
    masks = lk.prune.prune_nm(model)
    assert "backbone.conv0" not in masks and "classifier" in masks
    with pytest.raises(ValueError, match="backbone.conv0"):
        lk.prune.prune_nm(lk.models.build("vgg", width=0.125), layers=["backbone.conv0"])
    with pytest.raises(ValueError, match="3:2"):
        lk.prune.prune_nm(model, n=3, m=2)
    with pytest.raises(TypeError, match="2.0"):
        lk.prune.prune_nm(model, n=2.0)


def test_two_four_masks_survive_fine_tuning(tiny_data):
    import dataclasses

    small = dataclasses.replace(tiny_data, train=lk.data.Split(tiny_data.train.x[:512], tiny_data.train.y[:512]))
    model = lk.models.build("mlp", width=0.2)
    lk.prune.prune_nm(model)
    lk.train.fine_tune(model, small, epochs=2, lr=0.05, batch_size=64, progress=False)
    for name in ("fc1", "fc2", "fc5"):
        w = getattr(model, name).weight.detach()
        assert lk.prune.is_nm(w), name


# ---------------------------------------------------------------- aggregation and frontier

ROWS = [
    dict(method="a", compression=2, seed=0, accuracy=0.90, nonzeros=100),
    dict(method="a", compression=2, seed=1, accuracy=0.92, nonzeros=100),
    dict(method="a", compression=2, seed=2, accuracy=0.94, nonzeros=100),
    dict(method="b", compression=2, seed=0, accuracy=0.80, nonzeros=50),
    dict(method="a", compression=4, seed=0, accuracy=0.85, nonzeros=60),
    dict(method="a", compression=4, seed=1, accuracy=0.75, nonzeros=40),
]


def test_aggregate_mean_std_over_seeds():
    agg = lk.results.aggregate(ROWS, fields=("accuracy", "nonzeros"))
    assert [(r["method"], r["compression"], r["n"]) for r in agg] == [("a", 2, 3), ("b", 2, 1), ("a", 4, 2)]
    a2, b2, a4 = agg
    assert a2["accuracy_mean"] == pytest.approx(0.92)
    assert a2["accuracy_std"] == pytest.approx(0.02)               # sample std of .90 .92 .94
    assert b2["accuracy_std"] is None and b2["accuracy_mean"] == 0.80
    assert a4["nonzeros_mean"] == 50 and a4["nonzeros_std"] == pytest.approx(math.sqrt(200))
    assert a2["seeds"] == [0, 1, 2]


def test_aggregate_skips_none_and_rejects_bad_rows():
    rows = [dict(method="a", point=1, accuracy=0.5, lat=None), dict(method="a", point=1, accuracy=0.7, lat=2.0)]
    agg = lk.results.aggregate(rows, fields=("accuracy", "lat"))[0]
    assert agg["lat_mean"] == 2.0 and agg["lat_std"] is None
    with pytest.raises(ValueError, match="'accuracy'"):
        lk.results.aggregate([dict(method="a", point=1)])
    with pytest.raises(TypeError, match="'high'"):
        lk.results.aggregate([dict(method="a", point=1, accuracy="high")])
    with pytest.raises(TypeError, match="'accuracy'"):
        lk.results.aggregate(ROWS, fields="accuracy")


def test_frontier_on_hand_made_rows():
    agg = lk.results.aggregate(ROWS, fields=("accuracy", "nonzeros"))
    front = lk.results.frontier(agg, "nonzeros_mean")
    # (50, .80) b2 and (100, .92) a2 are non-dominated; a4 (50, .80) duplicates b2's point exactly
    assert [(r["method"], r["compression"]) for r in front] == [("b", 2), ("a", 4), ("a", 2)]
    rows = [dict(c=1.0, accuracy_mean=0.5), dict(c=2.0, accuracy_mean=0.4), dict(c=None, accuracy_mean=0.9)]
    assert lk.results.frontier(rows, "c") == [rows[0]]
    with pytest.raises(ValueError, match="'macs'"):
        lk.results.frontier(rows, "macs")


def test_index_puts_the_comparison_on_top_and_keeps_earlier_labs(tmp_path):
    from labkit import report

    (tmp_path / "figures").mkdir()
    for name in ("01_headline.png", "05_headline.png"):
        (tmp_path / "figures" / name).write_bytes(b"png")
    (tmp_path / "01_mnist.ipynb").write_text("{}")          # from an earlier `--only 01` run
    (tmp_path / "02_vgg.FAILED.ipynb").write_text("{}")
    runs = [dict(name="05_comparison", ok=True, seconds=60.0, error=None, output="05_comparison.ipynb")]
    text = report.write_index(tmp_path, "cpu", runs).read_text()
    assert text.index("figures/05_headline.png") < text.index("| notebook |")
    assert text.count("05_headline.png") == 1                # on top only, not again in the list
    assert "| 01_mnist | ok (earlier run) | - |" in text
    assert "| 02_vgg | FAILED (earlier run) | - |" in text
    assert "| 05_comparison | ok | 1.0 |" in text
    assert "Total: 1.0 min for the 1 notebook(s) of this run, on cpu" in text   # earlier runs: no time
    assert "figures/01_headline.png" in text


# ---------------------------------------------------------------- comparison runner

def test_compare_rejects_bad_points_budgets_and_methods(tmp_env):
    from labkit import compare

    with pytest.raises(ValueError, match="0.5"):
        compare.check_points([2, 0.5])
    with pytest.raises(ValueError, match="empty"):
        compare.check_points([])
    with pytest.raises(ValueError, match="epochs=-1"):
        lk.methods.Budget(epochs=-1, lr=0.1, batch_size=8)
    with pytest.raises(ValueError, match="lr=0"):
        lk.methods.Budget(epochs=1, lr=0, batch_size=8)
    with pytest.raises(ValueError, match="label_smoothing=1.0"):
        lk.methods.Budget(epochs=1, lr=0.1, batch_size=8, label_smoothing=1.0)
    assert lk.methods.Budget(1, 0.1, 8, label_smoothing=0.2).label().endswith("ls 0.2")
    assert "ls" not in lk.methods.Budget(1, 0.1, 8).label()   # rows of earlier runs keep their label
    cfg = lk.configure("smoke", {"smoke": {}}, lab="05", dataset="mnist", quiet=True)
    dense = lk.models.build("mlp", width=0.05)
    with pytest.raises(ValueError, match="'pruning by vibes'"):
        compare.run(cfg, cfg.data, "mlp", dense, "k", ["pruning by vibes"], [2], lk.methods.Budget(0, 0.1, 8), 0)
    with pytest.raises(ValueError, match="channels L2"):
        compare.run(cfg, cfg.data, "mlp", dense, "k", ["channels L2 (physical)"], [2],
                    lk.methods.Budget(0, 0.1, 8), 0, timing=False)


def test_compare_records_rows_that_reach_their_points(tmp_env):
    from labkit import compare

    cfg = lk.configure("smoke", {"smoke": {}}, lab="05", dataset="mnist", quiet=True)
    dense = lk.models.build("mlp", width=0.2)
    budget = lk.methods.Budget(epochs=0, lr=0.1, batch_size=64)
    names = ["magnitude, global one-shot", "units (physical)", "2:4 semi-structured"]
    rows = compare.run(cfg, cfg.data, "mlp", dense, "key1", names, [2, 8], budget, 0, timing=False,
                       log=lambda *a: None)
    by = {(r["method"], r["compression"]): r for r in rows}
    assert "point" not in rows[0]
    assert by["magnitude, global one-shot", 8.0]["compression_reached"] == pytest.approx(8.0, rel=1e-4)
    units = by["units (physical)", 8.0]
    assert units["compression_reached"] >= 8.0 and units["structured"]
    assert units["physical_mib"] < units["dense_mib"]
    assert ("2:4 semi-structured", 2.0) in by and ("2:4 semi-structured", 8.0) not in by
    assert all(r["budget"] == budget.label() and r["dense_key"] == "key1" for r in rows)
    saved = lk.results.load(lk.results.path_for("smoke"))
    assert sorted((r["method"], r["compression"]) for r in saved) == sorted(by)
    untimed = [dict(r, latency_best_ms=None, latency_cpu_ms=None) for r in rows]   # timing=False
    table = compare.summary(compare.aggregate(untimed))
    assert [t["compression"] for t in table][:2] == ["2x", "8x"] and table[0]["reached"] == "2.0x"


def test_compare_two_four_reports_its_own_point_whatever_was_asked(tmp_env):
    from labkit import compare

    cfg = lk.configure("smoke", {"smoke": {}}, lab="05", dataset="mnist", quiet=True)
    rows = compare.run(cfg, cfg.data, "mlp", lk.models.build("mlp", width=0.2), "k", ["2:4 semi-structured"], [4],
                       lk.methods.Budget(0, 0.1, 64), 0, timing=False, log=lambda *a: None)
    assert [r["compression"] for r in rows] == [2.0]
    assert rows[0]["compression_reached"] == pytest.approx(2.0, rel=0.01)


def test_rows_name_the_method_settings_but_not_the_timing_settings():
    from labkit import compare

    base = dict(scan_images=50, scan_sparsities=[0.5, 0.9])
    assert compare.knobs_key(base) == compare.knobs_key({**base, "latency_s": 0.01})
    assert compare.knobs_key(base) != compare.knobs_key({**base, "scan_images": 60})


# ---------------------------------------------------------------- the method interface

KNOBS = dict(greedy_val_images=32, greedy_step=0.5, sss_shrink=1.0, sss_gate_lr=1.0, sss_epochs=1,
             sss_lr=0.01, sss_batch_size=32, sss_recalibrate=1, iterative_steps=2, scan_images=32,
             scan_sparsities=[0.5, 0.9, 0.99])


@pytest.fixture(scope="module")
def tiny_pairs():
    """{'MLP' | 'VGG': (dense model, synthetic data)}, small enough to run every method."""
    mnist = lk.data.load("synthetic-mnist", val_size=64, train_subset=128)
    cifar = lk.data.load("synthetic-cifar10", val_size=64, train_subset=128)
    return {"MLP": (lk.models.build("mlp", width=0.2), mnist),
            "VGG": (lk.models.build("vgg", width=0.0625), cifar)}


@pytest.mark.parametrize("name", list(lk.methods.METHODS))
def test_prune_to_reaches_its_target_and_leaves_the_dense_model(name, tiny_pairs):
    kinds = {k.__name__ for k in lk.methods.METHODS[name][1]}
    dense, data = tiny_pairs["MLP" if "MLP" in kinds else "VGG"]
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    ctx = lk.methods.Context(data, lk.methods.Budget(1, 0.01, 32), 0, KNOBS, (4.0,))
    pruned, info = lk.methods.prune_to(name, dense, 4, ctx)
    nonzero, total = lk.prune.masks.count_weights(pruned)[0], lk.prune.masks.count_weights(dense)[1]
    assert info["compression"] == (2.0 if name.startswith("2:4") else 4.0)
    assert total / nonzero >= 0.99 * info["compression"], (name, total / nonzero)
    assert info["structured"] == ("physical" in name or name.startswith("hybrid"))
    assert all(torch.equal(v, dense.state_dict()[k]) for k, v in before.items())
    if info["structured"]:
        assert info["reference"] is dense and lk.metrics.count_params(pruned) < lk.metrics.count_params(dense)
    ctx.fine_tune(pruned, info.get("tune_images"))       # the common budget keeps every mask
    assert lk.prune.masks.count_weights(pruned)[0] <= nonzero


def test_prune_to_names_the_allowed_methods_and_shares_work_between_targets(tiny_pairs):
    dense, data = tiny_pairs["VGG"]
    ctx = lk.methods.Context(data, lk.methods.Budget(0, 0.1, 32), 0, KNOBS, (2.0, 4.0))
    with pytest.raises(ValueError, match="allowed: .*'magnitude, per tensor'"):
        lk.methods.prune_to("pruning by vibes", dense, 4, ctx)
    with pytest.raises(ValueError, match="does not apply to a VGG"):
        lk.methods.prune_to("units (physical)", dense, 4, ctx)
    with pytest.raises(ValueError, match="target=0.5 must be a finite number >= 1"):
        lk.methods.prune_to("magnitude, per tensor", dense, 0.5, ctx)
    with pytest.raises(lk.methods.Unreachable, match="2x"):
        lk.methods.prune_to("hybrid greedy + magnitude", dense, 2, ctx)
    lk.methods.prune_to("greedy filter (physical)", dense, 4, ctx)
    lk.methods.prune_to("greedy filter (physical)", dense, 2, ctx)
    assert len(ctx.memo) == 1                             # one greedy search for every target
    assert sorted(lk.methods.applicable(lk.models.build("mlp", width=0.05))) == sorted(
        n for n, (_, kinds) in lk.methods.METHODS.items() if lk.models.MLP in kinds)


def test_greedy_round_images_fine_tunes_after_every_round(tiny_pairs):
    """Lab 04's per-round fine-tune reaches lab 05's greedy search through its knob: each
    committed step is fine-tuned and re-scored; without the knob none is."""
    dense, data = tiny_pairs["VGG"]
    paths = {}
    for n in (None, 32):
        ctx = lk.methods.Context(data, lk.methods.Budget(1, 0.01, 32), 0,
                                 {**KNOBS, "greedy_round_images": n}, (4.0,))
        lk.methods.prune_to("greedy filter (physical)", dense, 4, ctx)
        (_, res), = ctx.memo.values()
        paths[n] = res[-1].steps
    assert paths[None] and all(st.acc_tuned is None for st in paths[None])
    assert paths[32] and all(st.acc_tuned is not None for st in paths[32])


def test_greedy_min_channels_keeps_every_conv_at_least_that_wide(tiny_pairs):
    """greedy_min_channels reaches lab 05's greedy search: with it no conv of the 16x VGG is
    narrower; without it (the default, 1) the same search squeezes a conv below it."""
    dense, data = tiny_pairs["VGG"]   # width 1/16: convs of 4-32 channels
    narrowest = {}
    for floor in (None, 3):
        knobs = KNOBS if floor is None else {**KNOBS, "greedy_min_channels": floor}
        ctx = lk.methods.Context(data, lk.methods.Budget(1, 0.01, 32), 0, knobs, (16.0,))
        small, _ = lk.methods.prune_to("greedy filter (physical)", dense, 16, ctx)
        narrowest[floor] = min(small.channels)
    assert narrowest[None] < 3 <= narrowest[3], narrowest
