"""Issue 14: CIFAR comparisons are measured on a held-out split where the
official test set is partial, with the official figure kept beside it in every
results row; each lab states the study's findings with results.finding."""
import copy

import pytest
import torch
from torch import nn

import labkit as lk


def _cfg(dataset="synthetic-cifar10"):
    return lk.config.make("smoke", {"smoke": {}}, lab="t", dataset=dataset)


@pytest.fixture
def held():
    """synthetic-cifar10 (test set of 1,000: partial) with 500 held-out training images."""
    return lk.data.load("synthetic-cifar10", val_size=200, train_subset=300, holdout=500)


def test_holdout_as_test_moves_the_partial_test_set_beside_the_holdout(held):
    d = held.holdout_as_test()
    assert d.test is held.holdout and d.test_label == held.holdout_label
    assert d.official is held.test and d.official_label == held.test_label
    assert "held-out" in d.test_label and "beside it" in d.describe()
    assert held.official is None and held.test is not held.holdout   # the original is unchanged
    x = lk.train.predict(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), d, "official")
    assert x.shape == (len(held.test),)


def test_holdout_as_test_keeps_a_whole_test_set_and_data_without_holdout(held, tiny_data):
    assert tiny_data.holdout_as_test() is tiny_data                 # no holdout
    whole = lk.data.Data(**{**held.__dict__, "test": held.holdout.to("cpu")})
    whole.test = lk.data.Split(torch.zeros(10_000, 3, 32, 32, dtype=torch.uint8),
                               torch.zeros(10_000, dtype=torch.long))
    assert whole.holdout_as_test() is whole                          # a whole test set is used as is


def test_official_split_is_an_error_without_one(held):
    with pytest.raises(ValueError, match="official"):
        held.loader("official", 10)
    assert lk.train.official(nn.Linear(1, 1), held) is None


def test_record_keeps_the_official_accuracy_beside_and_names_both_sets(tmp_env, held):
    d = held.holdout_as_test()
    row = lk.results.record(_cfg(), d, method="m", model="vgg", target_sparsity=0.0, accuracy=0.5,
                            accuracy_official=0.25, metrics={})
    assert row["test_set"] == d.test_label and "held-out" in row["test_set"]
    assert row["accuracy_official"] == 0.25 and row["official_set"] == held.test_label
    with pytest.raises(ValueError, match="accuracy_official=None"):
        lk.results.record(_cfg(), d, method="m", model="vgg", target_sparsity=0.5, accuracy=0.5, metrics={})
    with pytest.raises(ValueError, match="accuracy_official=1.5"):
        lk.results.record(_cfg(), d, method="m", model="vgg", target_sparsity=0.5, accuracy=0.5,
                          accuracy_official=1.5, metrics={})


def test_record_without_an_official_split_refuses_one(tmp_env, tiny_data):
    row = lk.results.record(_cfg("mnist"), tiny_data, method="m", model="mlp", target_sparsity=0.0, accuracy=0.5,
                            metrics={})
    assert row["accuracy_official"] is None and row["official_set"] is None
    with pytest.raises(ValueError, match="accuracy_official=0.3"):
        lk.results.record(_cfg("mnist"), tiny_data, method="m", model="mlp", target_sparsity=0.0,
                          accuracy=0.5, accuracy_official=0.3, metrics={})


def test_configure_gives_cifar_labs_the_holdout_as_test(tmp_env):
    cfg = lk.configure("smoke", {"smoke": {}}, lab="02", dataset="cifar10", model="vgg", quiet=True)
    split = lk.recipes.data_split("vgg", "smoke")
    assert len(cfg.data.test) == split["holdout"] and cfg.data.official is not None
    assert "held-out" in cfg.data.test_label
    idx = cfg.data.indices
    assert not set(idx["holdout"].tolist()) & (set(idx["train"].tolist()) | set(idx["val"].tolist()))


def test_finding_prints_what_it_found(capsys):
    assert lk.results.finding("a claim", True, "1.0 points") is True
    assert lk.results.finding("another", False, "9 points") is False
    out = capsys.readouterr().out.splitlines()
    assert out == ["HOLDS  | a claim | measured: 1.0 points", "MISSED | another | measured: 9 points"]


def test_train_subset_none_is_every_image(tiny_data):
    assert tiny_data.subset(None) is tiny_data
    assert len(tiny_data.subset(100).train) == 100


def test_points_reads_a_limit_as_written():
    assert 0.9005 - 0.8905 > 0.01                        # the float subtraction overshoots...
    assert lk.results.points(0.9005 - 0.8905) == 1.0     # ...a difference in points does not
    assert lk.results.points(-0.0123) == -1.23


def test_results_measure_evaluates_both_sets_measures_and_records(tmp_env, held):
    cfg = _cfg()
    cfg.data = held.holdout_as_test()
    net = lk.models.build("vgg", width=0.0625)
    small = lk.prune.channels.shrink_vgg(net, {i: torch.arange(c // 2) for i, c in enumerate(net.channels)})
    row = lk.results.measure(cfg, small, method="m", model="vgg", reference=net, timing=False,
                             channel_ratio=0.5, note="x")
    assert row["accuracy"] == lk.train.evaluate(small, cfg.data)
    assert row["accuracy_official"] == lk.train.evaluate(small, cfg.data, "official")
    assert row["removed"] > 0.7 and row["channel_ratio"] == 0.5 and row["note"] == "x"
    assert row["params"] == lk.metrics.count_params(small) and "latency_cpu_ms" not in row
    assert lk.results.load(lk.results.path_for("smoke")) == [row]
    given = lk.results.measure(cfg, small, method="m", model="vgg", timing=False, accuracy=0.5,
                               accuracy_official=0.25, channel_ratio=0.5, options=dict(disk=True))
    assert (given["accuracy"], given["accuracy_official"]) == (0.5, 0.25) and given["disk_best_mib"] > 0
    assert lk.results.load(lk.results.path_for("smoke")) == [given]   # same key: replaced


def test_results_measure_evaluates_official_unless_given_even_with_a_given_accuracy(tmp_env, held):
    """A caller that brings its own test accuracy still gets the official split measured."""
    cfg = _cfg()
    cfg.data = held.holdout_as_test()
    net = lk.models.build("vgg", width=0.0625)
    row = lk.results.measure(cfg, net, method="m", model="vgg", timing=False, accuracy=0.5,
                             target_sparsity=0.0)
    assert row["accuracy"] == 0.5
    assert row["accuracy_official"] == lk.train.evaluate(net, cfg.data, "official")


def test_step_rows_records_one_row_per_schedule_step(tmp_env, held):
    """results.step_rows: a schedule's steps become rows with the fine-tuned accuracy, the
    step's sparsity as target_sparsity and the step's fields; a missing net is an error."""
    cfg = _cfg()
    cfg.data, cfg["timing"] = held.holdout_as_test(), False
    net, nets = lk.models.build("vgg", width=0.0625), []
    steps = lk.methods.schedules.run(net, cfg.data, [0.5, 0.75], epochs=0, lr=0.1,
                                     batch_size=32, evaluate=lambda m: 0.125,
                                     on_step=lambda m, r: nets.append(copy.deepcopy(m)))
    rows = lk.results.step_rows(cfg, steps, nets, method="iterative", model="vgg", note="x")
    assert [r["target_sparsity"] for r in rows] == [0.5, 0.75]
    assert [r["step"] for r in rows] == [1, 2] and all(r["note"] == "x" for r in rows)
    assert all(r["accuracy"] == 0.125 and r["acc_pruned"] == 0.125 for r in rows)
    assert rows[1]["accuracy_official"] == lk.train.evaluate(nets[1], cfg.data, "official")
    assert len(lk.results.load(lk.results.path_for("smoke"))) == 2
    with pytest.raises(ValueError, match="2 steps but 1 nets"):
        lk.results.step_rows(cfg, steps, nets[:1], method="iterative", model="vgg")
