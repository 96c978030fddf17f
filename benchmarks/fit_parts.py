"""What labkit's fit adds to its training steps, part by part, for one epoch of
the MNIST MLP (12,800 images, batch 128): the loader, the per-step loss and
accuracy bookkeeping and learning-rate setting, the validation batch, the
optimiser's creation, the input check. Each part is the median of 7 timings,
printed next to the steps it rides on. The end-to-end ratio (fit epoch / pure
compute) is in run.py; on a noisy VM its rounds wander by more than these parts.

    python benchmarks/fit_parts.py
"""
from __future__ import annotations

import torch

import labkit as lk
from run import load, side_by_side, train_steps


def main():
    data, kind = load("mnist", "synthetic-mnist")
    n, batch = 12800, 128
    data.train = lk.data.Split(data.train.x[:n], data.train.y[:n])
    data.val = lk.data.Split(data.val.x[:batch], data.val.y[:batch])
    model = lk.models.build("mlp")
    opt = lk.train.sgd(model, lr=0.01)
    loader = data.loader("train", batch, shuffle=True, drop_last=True)
    x, y = next(iter(loader))
    steps = len(loader)
    out, loss = model(x).detach(), torch.zeros(())
    losses, correct = torch.zeros(steps), torch.zeros((), dtype=torch.long)

    def bookkeeping():
        for i in range(steps):
            for g in opt.param_groups:
                g["lr"] = lk.train.lr_at(i, steps, 0.01, 0.0, "constant")
            losses[i] = loss
            correct.add_((out.argmax(1) == y).sum())

    median_s = lambda fn: side_by_side(fn, repeats=7)[0]
    compute = median_s(lambda: train_steps(model, [(x, y)] * steps, opt))   # pure compute, as in run.py
    parts = {"loader (one epoch of batches)": median_s(lambda: [None for _ in loader]),
             "bookkeeping (lr, loss, accuracy; every step)": median_s(bookkeeping),
             "validation (one batch)": median_s(lambda: lk.train.evaluate(model, data, "val")),
             "optimiser creation": median_s(lambda: lk.train.sgd(model, lr=0.01)),
             "input check": median_s(lambda: lk.models.check_input(model, data.shape))}
    print(f"fit's parts beyond its steps | {kind} {data.name}, {len(data.train)} images, batch {batch}, "
          f"MLP | {lk.config.device_name(torch.device('cpu'))}")
    print(f"{'steps (' + str(steps) + ' on a fixed batch)':48s} {1e3 * compute:9.1f} ms")
    for name, sec in parts.items():
        print(f"{name:48s} {1e3 * sec:9.2f} ms  {100 * sec / compute:5.2f} %")
    print(f"{'all parts / steps':48s} {'':9s}     {100 * sum(parts.values()) / compute:5.2f} %")


if __name__ == "__main__":
    main()
