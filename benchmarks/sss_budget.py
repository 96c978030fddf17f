"""SSS in lab 04 with more sparse training: does SSS reach greedy's frontier when it
gets as much training as greedy's search? Lab 04's cpu recipe (the cached dense VGG of
the cpu profile, one epoch of SSS at batch 64, lr 0.01, gate lr 1.0, threshold budgets
from sss.lam_for_shrink, then one fine-tuning epoch at lr 0.05 on the 35,000 training
images), with `--images` training images for the sparse-training epoch (lab 04: 8,000;
greedy's search fine-tunes 2,048 images after each of its 8 / 14 / 19 rounds). Measured
on the 10,000 held-out CIFAR-10 training images.

    LABKIT_CIFAR10_FOLDER=../shared/data/cifar10-images \\
        python benchmarks/sss_budget.py --images 28000 --shrinks 1.2,2.0,3.0
"""
import argparse
import time

import torch

import labkit as lk
from labkit.methods import sss

LAB04 = dict(epochs=1, lr=0.01, gate_lr=1.0, batch_size=64)   # lab 04's cpu SSS settings


def run(dense, data, images: int, shrink: float) -> dict:
    """SSS with `images` training images and threshold budget `shrink`, then one fine-tuning
    epoch; its row (removed: the fraction of the dense Conv/Linear weights gone)."""
    t0 = time.perf_counter()
    part = data.subset(images, seed=2)                        # lab 04: seed + 2
    steps = LAB04["epochs"] * (len(part.train) // LAB04["batch_size"])
    lam = round(sss.lam_for_shrink(dense, shrink, steps=steps, gate_lr=LAB04["gate_lr"]), 5)
    r = sss.sss_prune(dense, part, lam=lam, threshold=0.0, seed=0, progress=False, **LAB04)
    trained = lk.train.evaluate(r.trained, data)
    lk.train.fine_tune(r.model, data, epochs=1, lr=0.05, batch_size=256, augment=True, seed=0,
                       progress=False)
    total = lk.prune.masks.count_weights(dense)[1]
    return dict(images=images, shrink=shrink, lam=lam, zeros=r.zeros(),
                removed=1 - lk.prune.masks.count_weights(r.model)[1] / total,
                trained=100 * trained, finetuned=100 * lk.train.evaluate(r.model, data),
                channels=r.model.channels, seconds=time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, nargs="+", default=[8000, 28000])
    ap.add_argument("--shrinks", default="1.2,2.0,3.0")
    args = ap.parse_args()
    cfg = lk.configure("cpu", {"cpu": {}}, lab="bench", dataset="cifar10", model="vgg",
                       quiet=True)
    dense, _ = lk.train.dense("vgg", cfg.data, "cpu", seed=0)
    dense.eval()
    print(f"{cfg.data.test_label}; cpu {torch.backends.cpu.get_cpu_capability()}, "
          f"torch {torch.__version__}")
    print("| images | shrink | lam | zero factors | removed | after SSS (%) | fine-tuned (%) "
          "| channels | seconds |\n|---|---|---|---|---|---|---|---|---|")
    for images in args.images:
        for shrink in (float(s) for s in args.shrinks.split(",")):
            r = run(dense, cfg.data, images, shrink)
            print(f"| {images:,} | {shrink:g} | {r['lam']} | {r['zeros']} | {r['removed']:.3f} "
                  f"| {r['trained']:.2f} | {r['finetuned']:.2f} | {r['channels']} "
                  f"| {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
