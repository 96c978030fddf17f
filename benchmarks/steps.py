"""Training-step throughput of ResNet-18 and VGG (width 1, CIFAR-10 shape) in
the ways fit can run them, side by side in ONE process, with the fraction of
the device's peak that each reaches.

    python benchmarks/steps.py                   # GPU when present, else CPU
    python benchmarks/steps.py --batch 32 --steps 5 --no-compile   # a quick CPU look

A step is forward, cross-entropy, backward and fused SGD on one fixed random
batch (pure compute: no loader), timed as the median of single steps, one way
after the other in this process. Ways: fp32 in the default NCHW layout (the
baseline every ratio divides), fp32 channels_last (what fit runs on a CPU),
then bf16 autocast with channels_last (what fit runs on CUDA), eager and
torch.compile'd. FLOPs of a step are counted as 3 x 2 x forward MACs x batch
(the backward costs about twice the forward). Two peaks: a measured one, the
better of a large matmul and a large 3x3 convolution in the way's dtype on
this device (the most its kernels deliver in practice), and the datasheet's
dense bf16 tensor-core figure when the GPU is one we know.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import labkit as lk

DATASHEET_BF16 = {"H200": 989e12, "H100 80GB HBM3": 989e12, "H100 SXM": 989e12, "A100": 312e12}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, steps: int) -> float:
    """Seconds of one fn() call: the median of `steps` single calls after 3 warm-ups."""
    for _ in range(3):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@torch.inference_mode()
def kernel_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s in `dtype` on `device`: the better of a large square matmul and a
    large 3x3 convolution (channels_last). On a CPU the two reach different
    libraries (the BLAS and oneDNN), which differ widely."""
    gpu = device.type == "cuda"
    n = 8192 if gpu else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    mm = 2 * n ** 3 / timed(lambda: a @ b, device, 10)
    batch, c, hw = (256, 512, 32) if gpu else (32, 512, 16)
    x = torch.randn(batch, c, hw, hw, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    conv = 2 * batch * hw * hw * c * c * 9 / timed(lambda: F.conv2d(x, w, padding=1), device, 10)
    return max(mm, conv)


def datasheet_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in DATASHEET_BF16.items() if k in name), None)


def step_fn(model_name: str, device: torch.device, batch: int, bf16: bool, channels_last: bool,
            compile: bool):
    """A closure running one training step on a fixed random (batch, 3, 32, 32) batch."""
    model = lk.models.build(model_name, width=1.0).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = torch.randint(0, 10, (batch,), device=device)
    opt = lk.train.sgd(model, lr=0.01)
    fwd = torch.compile(model) if compile else model

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=None, help="images a step (default 512 on GPU, 64 on CPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps a way (default 30 on GPU, 5 on CPU)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = ap.parse_args()
    device = lk.config.choose_device()
    gpu = device.type == "cuda"
    batch = args.batch or (512 if gpu else 64)
    steps = args.steps or (30 if gpu else 5)
    torch.manual_seed(0)
    peak = {bf16: kernel_peak(device, torch.bfloat16 if bf16 else torch.float32) for bf16 in (False, True)}
    sheet = datasheet_peak(device)
    print(f"labkit step throughput | torch {torch.__version__} | {lk.config.device_name(device)} | "
          f"batch {batch}, random input (3, 32, 32) | measured kernel peak fp32 {peak[False] / 1e12:.2f}, "
          f"bf16 {peak[True] / 1e12:.2f} TFLOP/s" + (f" | datasheet bf16 dense {sheet / 1e12:.0f} TFLOP/s" if sheet else ""))
    ways = [("fp32, NCHW, eager", False, False, False), ("fp32, channels_last, eager", False, True, False),
            ("bf16, channels_last, eager", True, True, False)]
    if not args.no_compile:
        ways.append(("bf16, channels_last, compiled", True, True, True))
    print(f"{'model':10s} {'way':32s} {'ms/step':>8s} {'images/s':>10s} {'x fp32':>7s} "
          f"{'TFLOP/s':>8s} {'% kernel':>8s}" + (f" {'% sheet':>8s}" if sheet else ""))
    for name in ("resnet18", "vgg"):
        macs = lk.metrics.macs(lk.models.build(name, width=1.0), (3, 32, 32))["macs"]
        base = None
        for way, bf16, cl, comp in ways:
            torch.compiler.reset()
            s = timed(step_fn(name, device, batch, bf16, cl, comp), device, steps)
            base = base or s
            flops = 6 * macs * batch / s
            print(f"{name:10s} {way:32s} {1e3 * s:8.2f} {batch / s:10,.0f} {base / s:7.2f} "
                  f"{flops / 1e12:8.2f} {100 * flops / peak[bf16]:7.1f}%"
                  + (f" {100 * flops / sheet:7.1f}%" if sheet else ""), flush=True)


if __name__ == "__main__":
    main()
