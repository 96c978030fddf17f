"""labkit.plots: every figure the labs draw builds from small inputs and labels what it plots
(which sparsity on which axis); the Pareto frontier drawn is the non-dominated set."""
import types

import matplotlib
import pytest
import torch

import labkit as lk

matplotlib.use("Agg")
plt = lk.plots.plt


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _mlp():
    torch.manual_seed(0)
    return lk.models.build("mlp", width=0.05)


def test_weight_histograms_and_training_curve():
    fig = lk.plots.weight_histograms(_mlp(), cols=3)
    assert len([a for a in fig.axes if a.axison]) == len(lk.prune.prunable(_mlp()))
    history = types.SimpleNamespace(epochs=[dict(epoch=1, train_loss=1.0, val_acc=0.5),
                                            dict(epoch=2, train_loss=0.5, val_acc=0.7)])
    fig = lk.plots.training_curve(history, "t")
    assert fig.axes[1].get_ylabel() == "validation accuracy (%)"


def test_accuracy_curves_name_the_sparsity_and_show_percent():
    fig = lk.plots.accuracy_curves({"a": ([0, 50], [1.0, 0.5])}, xlabel="k: sparsity (% zeros)",
                                   baseline=0.9)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "k: sparsity (% zeros)"
    assert list(ax.lines[0].get_ydata()) == [100.0, 50.0]
    assert ax.lines[1].get_label() == "dense" and ax.lines[1].get_ydata()[0] == 90.0


def test_bars_per_layer_counts_and_latency_line():
    fig = lk.plots.bars({"dense": {"backbone.conv0": 10, "classifier": 5},
                         "nonzero": {"backbone.conv0": 4}}, None, "parameters", log=True)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv0", "classifier"]
    assert [p.get_height() for p in ax.patches] == [10, 5, 4, 0]
    fig = lk.plots.bars({"MiB": [1.0, 0.5]}, ["a", "b"], "MiB", line={"latency (ms)": [2.0, 1.0]})
    assert fig.axes[1].get_ylabel() == "latency (ms)"
    assert list(fig.axes[1].lines[0].get_ydata()) == [2.0, 1.0]


def test_pareto_panels_frontier_is_the_non_dominated_set():
    rows = [dict(method="a", accuracy=0.9, x=0.1), dict(method="a", accuracy=0.8, x=0.5),
            dict(method="b", accuracy=0.85, x=0.5), dict(method="b", accuracy=0.3, x=0.9)]
    fig = lk.plots.pareto_panels(rows, [("x", "relative sparsity (%)", False, 100),
                                        ("x", "size (MiB)", True, 1)], title="t")
    high, low = fig.axes[:2]
    front = [l for l in high.lines if l.get_label() == "Pareto frontier"][0]
    assert list(front.get_xdata()) == [90.0, 50.0, 10.0]      # (50, 80) of 'a' is dominated
    assert high.get_xlabel() == "relative sparsity (%) (higher is better)"
    front = [l for l in low.lines if l.get_label() == "Pareto frontier"][0]
    assert list(front.get_xdata()) == [0.1]


def test_sensitivity_curves_and_sss_factors():
    fig = lk.plots.sensitivity_curves({"l1": [0.9, 0.5], "l2": [0.9, 0.8]}, [0.5, 0.9],
                                      baseline=0.95, plan={"l1": 0.5}, cols=3)
    assert fig.axes[0].get_xlabel() == "sparsity of the layer (%)"
    runs = {0.1: types.SimpleNamespace(factors=[torch.tensor([0.0, -1.0, 2.0])])}
    fig = lk.plots.sss_factors(runs)
    assert list(fig.axes[0].lines[0].get_ydata()) == [2.0, 1.0, 0.0]


def test_lab05_figures():
    agg = [dict(method="m", accuracy_mean=0.9, accuracy_std=0.01, nonzeros_mean=10.0),
           dict(method="n", accuracy_mean=0.8, accuracy_std=None, nonzeros_mean=100.0)]
    fig = lk.plots.comparison({"VGG": agg}, [("nonzeros", "nonzero parameters")], title="t")
    assert fig.axes[0].get_xscale() == "log"
    rows = [dict(batch=1, sparsity=0.5, speedup=0.5), dict(batch=1, sparsity=0.9, speedup=2.0)]
    fig = lk.plots.csr_speedup(rows)
    assert fig.axes[0].get_xlabel() == "sparsity of every Linear layer (% zeros)"
    fig = lk.plots.speedup_gap([dict(label="a", theory=2.0, measured=1.5)])
    assert fig.axes[0].get_xscale() == "log"
