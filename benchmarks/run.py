"""labkit's performance figures: each row times two ways of doing the same work
side by side in ONE process (interleaved repeats, median) and prints the ratio.

    python benchmarks/run.py            # all rows
    python benchmarks/run.py loader     # rows whose name contains 'loader'

Data: real MNIST / CIFAR-10 when $LABKIT_DATA / $LABKIT_CIFAR10_FOLDER point at
them (the Makefile sets both on the dev/CI machines), synthetic otherwise; each
row says which. Tests never assert on these numbers.
"""
from __future__ import annotations

import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import labkit as lk

REPEATS = 3


def runs(*fns, repeats=REPEATS):
    """Seconds of each fn() in each of `repeats` rounds (a list per fn), all run
    in turn every round after one warm-up each, so a burst of load hits every
    side alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return times


def side_by_side(*fns, repeats=REPEATS):
    """Median seconds of each fn() (see runs)."""
    return tuple(statistics.median(t) for t in runs(*fns, repeats=repeats))


def paired(a: list, b: list) -> float:
    """Median over rounds of a[i] / b[i]: each ratio compares two runs made
    moments apart, so slow drifts of the machine's speed cancel."""
    return statistics.median(x / y for x, y in zip(a, b))


def load(name, fallback):
    try:
        return lk.data.load(name), "real"
    except (FileNotFoundError, ValueError):
        return lk.data.load(fallback), "SYNTHETIC"


def train_steps(model, batches, opt, channels_last=False):
    for x, y in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op for labkit's batches
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def torchvision_loader(data, batch, augment, workers=0):
    """The classic pipeline: a Dataset of PIL images + transforms + DataLoader."""
    import torchvision.transforms as T
    from PIL import Image

    class DS(torch.utils.data.Dataset):
        def __init__(self, split, tf):
            self.x, self.y, self.tf = split.x, split.y, tf

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            img = self.x[i]
            img = Image.fromarray(img[0].numpy(), "L") if img.shape[0] == 1 else \
                Image.fromarray(img.permute(1, 2, 0).numpy(), "RGB")
            return self.tf(img), int(self.y[i])

    tfs = ([T.RandomCrop(data.shape[1], padding=4, padding_mode="reflect"), T.RandomHorizontalFlip()]
           if augment else []) + [T.ToTensor(), T.Normalize(data.mean, data.std)]
    return torch.utils.data.DataLoader(DS(data.train, T.Compose(tfs)), batch_size=batch, shuffle=True,
                                       drop_last=True, num_workers=workers)


def epoch_row(name, data, kind, model_name, width, batch, augment, n_train):
    """One epoch of labkit's loop (train.fit: DeviceLoader, fused SGD, schedule,
    loss bookkeeping) vs the plain loop (torchvision DataLoader + transforms
    feeding torch.optim.SGD with its default implementation) on the same model
    and hyper-parameters, and vs the pure compute of fit's step on one fixed
    batch. A fourth side, the DataLoader feeding fit's step, isolates the
    loader; a fifth, labkit's loader alone, shows what it adds to the compute.
    Conv models run channels_last on every side, as fit runs them; fit's
    per-epoch validation is cut to one batch. Every side trains the same
    model object (each with its own optimiser): separate copies of one model
    time differently by a few per cent on this VM, which would blur a 5 % goal.
    Ratios are medians of per-round ratios (see paired)."""
    data.train = lk.data.Split(data.train.x[:n_train], data.train.y[:n_train])
    data.val = lk.data.Split(data.val.x[:batch], data.val.y[:batch])
    m = lk.models.build(model_name, width=width)
    cl = lk.models.has_conv(m)
    m = m.to(memory_format=torch.channels_last) if cl else m
    hp = dict(lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    plain_opt = torch.optim.SGD(m.parameters(), **hp)
    pure_opt, dl_opt = lk.train.sgd(m, **hp), lk.train.sgd(m, **hp)
    ours = data.loader("train", batch, shuffle=True, augment=augment, drop_last=True, channels_last=cl)
    theirs = torchvision_loader(data, batch, augment)
    fixed = [next(iter(ours))] * len(ours)
    fit = lambda: lk.train.fit(m, data, epochs=1, batch_size=batch, augment=augment, warmup=0.0,
                               schedule="constant", progress=False, **hp)
    t_fit, t_plain, t_pure, t_dl, t_ours = runs(fit, lambda: train_steps(m, theirs, plain_opt, cl),
                                                lambda: train_steps(m, fixed, pure_opt, cl),
                                                lambda: train_steps(m, theirs, dl_opt, cl),
                                                lambda: [None for _ in ours], repeats=7)
    what = f"{kind} {data.name}, {len(data.train)} images, batch {batch}, {model_name} w={width}"
    per_round = [a / b for a, b in zip(t_fit, t_pure)]
    loader_share = paired(t_ours, t_pure)
    return [
        (f"{name}: plain DataLoader loop / labkit fit, one epoch", paired(t_plain, t_fit),
         f"{what}; fit {statistics.median(t_fit):.2f} s"),
        (f"{name}:   the loader alone: DataLoader / DeviceLoader, fit's step", paired(t_dl, t_fit),
         "same step both sides"),
        (f"{name}: labkit fit epoch / pure compute (fixed batch)", paired(t_fit, t_pure),
         f"goal <= 1.05; rounds {min(per_round):.2f}-{max(per_round):.2f}"),
        (f"{name}:   DeviceLoader epoch alone / pure compute", loader_share,
         f"{100 * loader_share:.2f} %: {1e3 * statistics.median(t_ours) / len(ours):.2f} ms a batch"),
    ]


def masked_row():
    data, kind = load("mnist", "synthetic-mnist")
    n = 12800
    data.train = lk.data.Split(data.train.x[:n], data.train.y[:n])
    dense = lk.models.build("mlp")
    masked = copy.deepcopy(dense)
    lk.prune.prune_global(masked, 0.9)
    kw = dict(epochs=1, lr=0.01, batch_size=128, progress=False, warmup=0.0)
    t_dense, t_masked = side_by_side(lambda: lk.train.fit(dense, data, **kw),
                                     lambda: lk.train.fit(masked, data, **kw))
    return [("masked fine-tune epoch / dense epoch (MLP)", t_masked / t_dense,
             f"{kind} {data.name}, {n} images; goal <= 1.10")]


def channel_row():
    """Latency speed-up of a channel-pruned VGG (the study's width 1, half the
    channels of every conv but the last) vs its MACs ratio: CPU inference
    (torch.inference_mode) in the default and the channels_last memory layout,
    eager and compiled (torch.compile with inductor freezing: BN folded into
    the conv, weights prepacked: what a deployment runs); the same way for both models."""
    model = lk.models.build("vgg", width=1.0).eval()
    keep = {i: lk.prune.l2_ranking(model, i)[: c // 2] for i, c in enumerate(model.channels[:-1])}
    small = lk.prune.shrink_vgg(model, keep).eval()
    macs_ratio = lk.metrics.macs(model, (3, 32, 32))["macs"] / lk.metrics.macs(small, (3, 32, 32))["macs"]
    rows = []
    for way, cl, compile in (("default", False, False), ("channels_last", True, False),
                             ("channels_last, compiled", True, True)):
        for batch in (1, 64):
            ms = lk.metrics.compare_latency({"big": model, "small": small}, (3, 32, 32), batch=batch,
                                            rounds=REPEATS, min_run_time=0.5, channels_last=cl,
                                            compile=compile)  # interleaved, fastest median
            speed = ms["big"] / ms["small"]
            rows.append((f"channel-pruned VGG speed-up / MACs ratio, b{batch}, {way}", speed / macs_ratio,
                         f"VGG w=1: {ms['big']:.1f} -> {ms['small']:.1f} ms, speed-up {speed:.2f}x "
                         f"vs MACs {macs_ratio:.2f}x; goal >= 0.9"))
    return rows


def layout_row():
    """One training step (forward, backward, SGD) in the default NCHW layout vs
    channels_last, which labkit's fit uses for conv models on every device."""
    rows = []
    for name, width, batch in (("vgg", 0.25, 128), ("resnet18", 0.25, 64)):
        x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
        nchw = lk.models.build(name, width=width)
        cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (nchw, cl)]
        t_nchw, t_cl = side_by_side(lambda: train_steps(nchw, [(x, y)] * 5, opts[0]),
                                    lambda: train_steps(cl, [(x_cl, y)] * 5, opts[1]))
        rows.append((f"training step NCHW / channels_last ({name} w={width}, b{batch})", t_nchw / t_cl,
                     f"{1e3 * t_nchw / 5:.0f} -> {1e3 * t_cl / 5:.0f} ms a step, random input"))
    return rows


def rows(only: str | None):
    tasks = {
        "loader-mnist": lambda: epoch_row("MNIST MLP", *load("mnist", "synthetic-mnist"), "mlp", 1.0, 128, False, 12800),
        "loader-cifar": lambda: epoch_row("CIFAR CNN + augmentation", *load("cifar10", "synthetic-cifar10"),
                                          "vgg", 0.125, 128, True, 5120),
        "masked": masked_row,
        "channels": channel_row,
        "layout": layout_row,
    }
    for name, task in tasks.items():
        if only is None or only in name:
            yield from task()


def main():
    torch.manual_seed(0)
    only = sys.argv[1] if len(sys.argv) > 1 else None
    print(f"labkit benchmarks | torch {torch.__version__} | {lk.config.device_name(torch.device('cpu'))}")
    print(f"{'measure':72s} {'ratio':>7s}  conditions")
    for label, ratio, note in rows(only):
        print(f"{label:72s} {ratio:7.2f}  {note}", flush=True)


if __name__ == "__main__":
    main()
