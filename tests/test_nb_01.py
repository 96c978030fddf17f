"""Lab 01's exactness check, moved out of the notebook: at each of the study's k, weight pruning
leaves exactly round(k * n) zeros in every pruned layer and unit pruning exactly round(k * units)
zero rows, on the copies that lk.sensitivity.sweep prunes; k = 0 changes nothing."""
import torch

import labkit as lk

K = [0, 25, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 97.5, 99]   # lab 01's sparsities, in %


def test_sweep_prunes_exactly_k_of_each_layer():
    torch.manual_seed(0)
    model = lk.models.build("mlp", width=0.05)
    hidden = lk.prune.hidden_layers(model)
    x = torch.randn(16, 1, 28, 28)
    prune = {"weight": lambda m, s: lk.prune.prune_per_tensor(m, s, layers=hidden),
             "unit": lambda m, s: lk.prune.prune_units(m, s)}
    for method, fn in prune.items():
        points = lk.sensitivity.sweep(model, fn, [k / 100 for k in K], lambda m: 0.0,
                                      progress=False)
        assert lk.prune.max_difference(points[0]["model"], model, x) == 0   # k = 0
        for p in points:
            for name in hidden:
                w = getattr(p["model"], name).weight
                if method == "weight":
                    zeros, n = int((w == 0).sum()), w.numel()
                else:
                    zeros, n = int((w.abs().sum(1) == 0).sum()), w.shape[0]
                assert zeros == lk.prune.n_zeros(p["sparsity"], n), (method, name, p["sparsity"])
