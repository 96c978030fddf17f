"""The fine-tuning recipe, judged at a fixed budget: the cached dense VGG of the
cpu profile (labkit.recipes), globally magnitude-pruned to 8x (and 16x) fewer
nonzero weights, fine-tuned once per variant on the whole training split
(35,000 genuine CIFAR-10 images), then measured on the 10,000 held-out
training images (never trained on, never used to choose) and on the first
1,000 official test images.

    LABKIT_CIFAR10_FOLDER=../shared/data/cifar10-images \\
        python benchmarks/finetune.py --variants cos-0.01,cos-0.05,onecycle-0.05 --points 8

Variants change the schedule, peak learning rate, label smoothing or epochs
(see VARIANTS). Times are wall seconds on this machine; compare them only
within one run.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

import labkit as lk
from variants import chosen

VARIANTS = {  # keyword arguments of lk.train.fine_tune (batch 256, crop + flip augmentation)
    "cos-0.01": dict(lr=0.01),
    "cos-0.05": dict(lr=0.05),
    "cos-0.1": dict(lr=0.1),
    "onecycle-0.05": dict(lr=0.05, warmup=0.1, schedule="linear"),
    "onecycle-0.1": dict(lr=0.1, warmup=0.1, schedule="linear"),
    "cos-0.05-ls0.2": dict(lr=0.05, label_smoothing=0.2),
    "cos-0.05-2ep": dict(lr=0.05, epochs=2),
    "cos-0.05-ls0.2-2ep": dict(lr=0.05, label_smoothing=0.2, epochs=2),
}


def run(name: str, dense, data, point: float, seed: int) -> dict:
    """Prune a copy of `dense` to 1/point of its weights, fine-tune it with variant
    `name`; returns its row (accuracies in %, seconds)."""
    model = copy.deepcopy(dense)
    lk.prune.prune_global(model, 1 - 1 / point)
    pruned = lk.train.evaluate(model, data)
    kw = {"epochs": 1, **VARIANTS[name]}
    t0 = time.perf_counter()
    lk.train.fine_tune(model, data, batch_size=256, augment=True, seed=seed, progress=False, **kw)
    row = dict(variant=name, point=point, pruned=100 * pruned, holdout=100 * lk.train.evaluate(model, data),
               official=100 * lk.train.official(model, data), seconds=time.perf_counter() - t0)
    print(f"{name:>15} {point:g}x: {row['pruned']:.2f} after pruning -> {row['holdout']:.2f} held-out "
          f"({row['official']:.1f} on the first 1,000 test images) | {row['seconds']:.0f} s", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--points", default="8")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = chosen(args.variants, VARIANTS)
    device = lk.config.choose_device()
    data = lk.data.load("cifar10", device=device, **lk.recipes.data_split("vgg", "cpu")).holdout_as_test()
    dense, _ = lk.train.dense("vgg", data, "cpu", progress=False)
    dense_acc = lk.train.evaluate(dense, data)
    print(f"{data.describe()}\ndense VGG (cpu recipe): {100 * dense_acc:.2f}% held-out | device "
          f"{lk.config.device_name(device)}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"torch {torch.__version__}", flush=True)
    for point in (float(p) for p in args.points.split(",")):
        for name in names:
            run(name, dense, data, point, args.seed)


if __name__ == "__main__":
    main()
