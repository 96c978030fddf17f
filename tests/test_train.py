"""Training: it learns, it stops on NaN, it caches and rebuilds corrupt entries, it repeats."""
import copy

import pytest
import torch

import labkit as lk


def test_fit_learns_synthetic(tiny_data):
    m = lk.models.build("mlp", width=0.1)
    h = lk.train.fit(m, tiny_data, epochs=3, lr=0.05, batch_size=128, progress=False)
    assert len(h.epochs) == 3 and h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]
    assert lk.train.evaluate(m, tiny_data) > 0.5  # 10 classes: chance is 0.1


def test_nan_loss_names_epoch_and_step(tiny_data):
    m = lk.models.build("mlp", width=0.1)
    with torch.no_grad():
        m.fc1.weight[0, 0] = float("nan")
    with pytest.raises(lk.train.TrainingDiverged, match=r"epoch 1, step 1\b"):
        lk.train.fit(m, tiny_data, epochs=1, lr=0.05, batch_size=128, progress=False)


def test_same_seed_same_numbers(tiny_data):
    runs = []
    for _ in range(2):
        lk.config.seed_everything(0)
        m = lk.models.build("mlp", width=0.1)
        h = lk.train.fit(m, tiny_data, epochs=1, lr=0.05, batch_size=128, seed=0, progress=False)
        runs.append((h.epochs[0]["train_loss"], lk.train.evaluate(m, tiny_data), m.fc1.weight.clone()))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1] and torch.equal(runs[0][2], runs[1][2])


def test_augmented_fit_does_not_depend_on_the_global_rng():
    """A cached dense model skips its training and so leaves the global RNG elsewhere:
    the fine-tuning after it must not care."""
    d = lk.data.load("synthetic-cifar10", train_subset=256)
    start = lk.models.build("vgg", width=0.0625).state_dict()
    weights = []
    for global_seed in (0, 123):
        m = lk.models.build("vgg", width=0.0625)
        m.load_state_dict(start)
        torch.manual_seed(global_seed)
        lk.train.fit(m, d, epochs=1, lr=0.05, batch_size=64, augment=True, seed=0, progress=False)
        weights.append(m.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_dense_cache_hit_and_corrupt_rebuild(tiny_data, tmp_env, capsys):
    kw = dict(width=0.1, epochs=1)
    m1, h1 = lk.train.dense("mlp", tiny_data, "smoke", **kw)
    (entry,) = (tmp_env / "cache" / "models").glob("mlp-*.pt")
    m2, h2 = lk.train.dense("mlp", tiny_data, "smoke", **kw)
    assert "loaded from cache" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte in the middle
    entry.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupt"):
        m3, _ = lk.train.dense("mlp", tiny_data, "smoke", **kw)
    assert "loaded from cache" not in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values()))
    assert lk.io.load_verified(entry) is not None  # rebuilt entry is sound


def test_cache_key_changes_with_recipe(tiny_data):
    a = lk.train.cache_key("mlp", 0.1, tiny_data, dict(epochs=1), 0)
    assert a != lk.train.cache_key("mlp", 0.1, tiny_data, dict(epochs=2), 0)
    assert a != lk.train.cache_key("mlp", 0.1, tiny_data, dict(epochs=1), 1)
    # a speed-only setting does not make another model: lab 03 passes compile=False
    assert a == lk.train.cache_key("mlp", 0.1, tiny_data, dict(epochs=1, compile=False), 0)


def test_lr_schedule_shape():
    lrs = [lk.train.lr_at(s, 100, 1.0, 0.1, "linear") for s in range(100)]
    assert lrs[9] == pytest.approx(1.0) and lrs[0] < lrs[9] and lrs[-1] < 0.02
    assert max(lrs) == pytest.approx(1.0)


def test_conv_models_train_channels_last_and_mlps_are_untouched():
    cnn = lk.data.load("synthetic-cifar10", train_subset=256)
    vgg = lk.models.build("vgg", width=0.0625)
    lk.prune.prune_global(vgg, 0.5)
    lk.train.fit(vgg, cnn, epochs=1, lr=0.05, batch_size=64, progress=False)
    conv = vgg.backbone.conv0
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert lk.metrics.global_sparsity(vgg) == pytest.approx(0.5, abs=1e-3)   # masks still hold in this layout
    nchw = copy.deepcopy(vgg).to(memory_format=torch.contiguous_format)
    assert nchw.backbone.conv0.weight.is_contiguous()
    assert lk.train.evaluate(vgg, cnn) == lk.train.evaluate(nchw, cnn)       # layout does not change answers
    assert not lk.models.has_conv(lk.models.build("mlp", width=0.1))
    lk.train.fit(nchw, cnn, epochs=1, lr=0.05, batch_size=64, progress=False, channels_last=False)
    assert nchw.backbone.conv0.weight.is_contiguous()


def test_latency_leaves_the_model_as_it_was():
    m = lk.models.build("vgg", width=0.0625)
    t = lk.metrics.latency(m, (3, 32, 32), min_run_time=0.01)
    assert t > 0 and m.training and m.backbone.conv0.weight.is_contiguous()
    assert m.backbone.conv0.weight.requires_grad


def test_fits_optimiser_is_fused_sgd_with_decay_on_weights_only():
    m = lk.models.build("vgg", width=0.0625)
    opt = lk.train.sgd(m, lr=0.1, weight_decay=1e-3)
    decay, no_decay = opt.param_groups
    assert opt.defaults["fused"] and opt.defaults["nesterov"]
    assert decay["weight_decay"] == 1e-3 and all(p.ndim > 1 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))


def test_precision_follows_the_cpu_and_the_override(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv("LABKIT_PRECISION", raising=False)
    for native in (True, False):
        monkeypatch.setattr(lk.config, "native_bf16", lambda: native)
        assert lk.config.autocast_dtype(cpu) == (torch.bfloat16 if native else None)
        assert lk.config.autocast_dtype(cuda) == torch.bfloat16
    monkeypatch.setenv("LABKIT_PRECISION", "fp32")
    assert lk.config.autocast_dtype(cuda) is None
    monkeypatch.setenv("LABKIT_PRECISION", "bf32")
    with pytest.raises(ValueError, match="LABKIT_PRECISION='bf32'"):
        lk.config.autocast_dtype(cpu)


def test_no_warmup_starts_at_the_peak_and_decays():
    """warmup=0: step 0 trains at the full learning rate (no step is spent at a lower one)."""
    lrs = [lk.train.lr_at(s, 4, 1.0, 0.0, "cosine") for s in range(4)]
    assert lrs[0] == 1.0 and all(a > b > 0 for a, b in zip(lrs, lrs[1:]))
    assert [lk.train.lr_at(s, 4, 1.0, 0.0, "linear") for s in range(4)] == [1.0, 0.75, 0.5, 0.25]


def test_evaluator_is_the_accuracy_on_the_whole_split_it_is_given(tiny_data, monkeypatch):
    monkeypatch.setenv("LABKIT_PRECISION", "fp32")   # evaluator runs in fp32, as evaluate then does
    m = lk.models.build("mlp", width=0.1)
    lk.train.fit(m, tiny_data, epochs=1, lr=0.05, batch_size=128, progress=False)
    assert lk.train.evaluator(tiny_data)(m) == lk.train.evaluate(m, tiny_data, "val")  # every image
    head = tiny_data.subset(100, "val", seed=None)
    part = lk.train.evaluator(head, batch_size=30)(m)    # 4 batches, the last of 10 images
    assert m.training and part == lk.train.evaluate(m, head, "val") and part * 100 == round(part * 100)
    with pytest.raises(ValueError, match="bogus"):
        lk.train.evaluator(tiny_data, "bogus")


def test_dense_key_is_the_key_dense_caches_under(tmp_env, tiny_data):
    """train.dense_key names the file train.dense writes, overrides and speed-only settings too."""
    lk.train.dense("mlp", tiny_data, "smoke", seed=3, progress=False, epochs=1, compile=False)
    key = lk.train.dense_key("mlp", tiny_data, "smoke", seed=3, epochs=1, compile=False)
    assert [p.name for p in (tmp_env / "cache" / "models").iterdir()] == [f"mlp-{key}.pt"]
    assert key != lk.train.dense_key("mlp", tiny_data, "smoke", seed=3, epochs=2)
