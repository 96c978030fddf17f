"""2:4 semi-structured sparse Linear vs dense Linear on one GPU (torch's
torch.sparse.to_sparse_semi_structured kernels, Ampere or later).

For each weight shape (out, in), a random fp16 weight is 2:4-pruned by
magnitude (labkit.prune.nm_mask) and F.linear on a (batch, in) input is timed
with the dense weight and with its semi-structured copy, in the same process
(torch.utils.benchmark, median). The printed ratio is dense time / sparse
time: above 1, the sparse kernels win.

    python benchmarks/semi_structured.py
    python benchmarks/semi_structured.py --batch 1024 --seconds 1

Without CUDA it prints that it skipped and exits 0. Tests never assert on
these numbers.
"""
from __future__ import annotations

import argparse
import logging

logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # CUDA_HOME notice on CPU

import torch  # noqa: E402
from torch.sparse import to_sparse_semi_structured  # noqa: E402
from torch.utils import benchmark  # noqa: E402

from labkit.prune import nm_mask  # noqa: E402

SHAPES = ((1000, 784), (4096, 4096))


@torch.no_grad()
def semi_structured_latency(shapes=SHAPES, batch: int = 256, dtype=torch.float16,
                            min_run_time: float = 0.5) -> list[dict] | None:
    """GPU only: F.linear with a 2:4-pruned weight (out, in) on a (batch, in) input, dense vs
    semi-structured, for each shape. None without CUDA. [{shape, batch, dense_ms, sparse_ms,
    speedup}] (speedup = dense / sparse time)."""
    if not torch.cuda.is_available():
        return None
    rows = []
    for out_f, in_f in shapes:
        w = torch.randn(out_f, in_f, device="cuda", dtype=dtype)
        w = w * nm_mask(w, 2, 4).to(dtype)
        ws = to_sparse_semi_structured(w)
        x = torch.randn(batch, in_f, device="cuda", dtype=dtype)
        f = torch.nn.functional.linear
        t = {k: benchmark.Timer("f(x, W)", globals=dict(f=f, x=x, W=W)).blocked_autorange(
            min_run_time=min_run_time).median for k, W in (("dense", w), ("sparse", ws))}
        rows.append(dict(shape=(out_f, in_f), batch=batch, dense_ms=1e3 * t["dense"],
                         sparse_ms=1e3 * t["sparse"], speedup=t["dense"] / t["sparse"]))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=0.5, help="min run time of each timing")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rows = semi_structured_latency(batch=args.batch, min_run_time=args.seconds)
    if rows is None:
        print("skipped: no CUDA device (2:4 semi-structured kernels need an Ampere-or-later GPU)")
        return 0
    print(f"2:4 sparse vs dense Linear, fp16, batch {args.batch}, {torch.cuda.get_device_name()}, "
          f"torch {torch.__version__}")
    print(f"{'shape':>14} {'dense ms':>10} {'sparse ms':>10} {'dense/sparse':>13}")
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        print(f"{shape:>14} {r['dense_ms']:>10.4f} {r['sparse_ms']:>10.4f} {r['speedup']:>13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
