"""CSR kernels vs dense kernels for the pruned MLP's Linear layers, side by side.

For each sparsity, the full-size MLP (784-1000-1000-500-200-10) is pruned per
tensor by magnitude, and the dense model and its CSR copy
(labkit.sparse.to_csr) are timed in the SAME process, alternately
(torch.utils.benchmark, warm-up, median), at batch 1 and batch 256. The
printed ratio is dense time / CSR time: above 1, the sparse kernels win.

    python benchmarks/sparse_vs_dense.py               # 1 thread
    python benchmarks/sparse_vs_dense.py --threads 2

Weights are random (the speed of a matrix product does not depend on what
was learned), so no data is needed. Tests never assert on these numbers.
"""
from __future__ import annotations

import argparse
import logging

import torch

import labkit as lk

SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=0.3, help="min run time of each timing")
    args = ap.parse_args(argv)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = lk.models.build("mlp")
    rows = lk.metrics.csr_study(model, (1, 28, 28), SPARSITIES, batches=(1, 256),
                               threads=args.threads, min_run_time=args.seconds)
    print(f"MLP 784-1000-1000-500-200-10, random weights, per-tensor magnitude pruning, CPU, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(f"{'sparsity':>9} {'batch':>6} {'dense ms':>10} {'CSR ms':>10} {'dense/CSR':>10}")
    for r in rows:
        print(f"{r['sparsity']:>9.2f} {r['batch']:>6} {r['dense_ms']:>10.3f} {r['csr_ms']:>10.3f} "
              f"{r['speedup']:>10.2f}")
    for b in (1, 256):
        s = lk.metrics.crossover(rows, b)
        print(f"batch {b}: CSR " + (f"wins from sparsity {s:.2f} on" if s is not None else "never wins here"))


if __name__ == "__main__":
    main()
