"""Issue 14's reference epoch on this machine, and the cpu report's run-time targets scaled by it.

The issue sets its targets (cpu report <= 90 min from a cold cache, <= 45 min with the dense
models cached) for a 2-core AVX2-only EPYC, where one epoch of VGG width 1/4 on 45,000 genuine
CIFAR-10 training images, batch 256, labkit's fit took 110 s. On another machine the limits
scale by the ratio of that epoch's time here to 110 s. This script times the epoch (the issue's
recipe: lr 0.2, Nesterov, label smoothing 0.2, warm-up then linear decay, crop and flip) and
prints the scaled limits.

    LABKIT_CIFAR10_FOLDER=../shared/data/cifar10-images python benchmarks/reference_epoch.py
"""
from __future__ import annotations

import argparse
import time

import torch

import labkit as lk
from recipe import BASE   # the recipe, as benchmarks/recipe.py runs it

REFERENCE_S = 110.0                        # the epoch on the AVX2-only EPYC
LIMITS_MIN = {"cold cache": 90.0, "dense models cached": 45.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1, help="epochs timed (their mean is reported)")
    args = ap.parse_args()
    device = lk.config.choose_device()
    data = lk.data.load("cifar10", val_size=5000, device=device)   # 45,000 train, no holdout
    torch.manual_seed(0)
    model = lk.models.build("vgg", width=0.25)
    t0 = time.perf_counter()
    hist = lk.train.fit(model, data, epochs=args.epochs, seed=0, progress=False, **BASE)
    epoch_s = (time.perf_counter() - t0) / args.epochs
    print(f"{data.describe()}\ndevice {lk.config.device_name(device)}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"reference epoch: {epoch_s:.1f} s ({hist.images_per_s():.0f} training images/s), "
          f"{REFERENCE_S / epoch_s:.2f}x the AVX2 machine's {REFERENCE_S:.0f} s")
    for what, limit in LIMITS_MIN.items():
        here = limit * epoch_s / REFERENCE_S
        print(f"  cpu report limit, {what}: {limit:.0f} min there -> {here:.1f} min here")


if __name__ == "__main__":
    main()
