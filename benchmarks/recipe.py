"""The CIFAR-10 dense recipe, judged the airbench way: accuracy at a fixed
budget. Trains one model per variant on genuine CIFAR-10 training images with
10,000 of them held out (never trained on, never used to choose) and 5,000 for
validation, and prints the validation accuracy after each epoch (what a choice
between variants may look at), then the final held-out accuracy, with and
without flipped-image TTA, and on the first 1,000 official test images.

    LABKIT_CIFAR10_FOLDER=../shared/data/cifar10-images \
        python benchmarks/recipe.py --model vgg --width 0.25 --epochs 8 --variants base,ema

Variants change one thing of the base recipe each (an ablation): see VARIANTS.
Times are wall seconds on this machine; compare them only within one run.
"""
from __future__ import annotations

import argparse
import time

import torch

import labkit as lk
from variants import chosen

BASE = dict(batch_size=256, lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4, warmup=0.1,
            schedule="linear", label_smoothing=0.2, augment=True)
VARIANTS = {
    "base": {},
    "ema": dict(ema=0.99),
    "no-smoothing": dict(label_smoothing=0.0),
    "no-nesterov": dict(nesterov=False),
    "cosine": dict(schedule="cosine"),
    "batch-128": dict(batch_size=128, lr=0.1),
    "lr-0.4": dict(lr=0.4),
}


def run(name: str, data: lk.data.Data, model_name: str, width: float, epochs: int, seed: int) -> dict:
    """Train one variant; returns its row (accuracies in %, minutes)."""
    torch.manual_seed(seed)
    model = lk.models.build(model_name, width=width)
    t0 = time.perf_counter()
    hist = lk.train.fit(model, data, epochs=epochs, seed=seed, progress=False, desc=name,
                        **{**BASE, **VARIANTS[name]})
    minutes = (time.perf_counter() - t0) / 60
    per_epoch = " ".join(f"{100 * e['val_acc']:.1f}" for e in hist.epochs)
    row = dict(variant=name, val=100 * hist.epochs[-1]["val_acc"], holdout=100 * lk.train.evaluate(model, data, "holdout"),
               holdout_tta=100 * lk.train.evaluate(model, data, "holdout", tta=True),
               test1000=100 * lk.train.evaluate(model, data, "test"), minutes=minutes,
               images_per_s=hist.images_per_s())
    print(f"{name:>13}: val per epoch {per_epoch} | final {row['holdout']:.2f} "
          f"(TTA {row['holdout_tta']:.2f}) | first-1,000 test {row['test1000']:.1f} "
          f"| {minutes:.1f} min, {row['images_per_s']:.0f} images/s", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vgg", choices=tuple(lk.models.MODELS))
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--variants", default="base,ema")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = chosen(args.variants, VARIANTS)
    data = lk.data.load("cifar10", holdout=10_000, device=lk.config.choose_device())
    cap = torch.backends.cpu.get_cpu_capability()
    print(f"{data.describe()}\nheld out: {data.holdout_label}\n{args.model} width {args.width}, "
          f"{args.epochs} epochs, base {BASE}\ndevice {lk.config.device_name(lk.config.choose_device())}, "
          f"cpu capability {cap}, torch {torch.__version__}", flush=True)
    for name in names:
        run(name, data, args.model, args.width, args.epochs, args.seed)


if __name__ == "__main__":
    main()
