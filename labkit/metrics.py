"""What a pruned model costs: counts, sparsity, size (in theory and on disk), MACs, latency
(the definitions: docs/design.md, "Size", "MACs", "Latency")."""
from __future__ import annotations

import copy
import gzip
import io
import itertools
import logging
import math
import tempfile
from pathlib import Path

import torch
import torch._dynamo.config as dynamo_config
import torch._inductor.config as inductor_config
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import sparse
from .config import check_fraction, check_int
from .models import MLP, check_input, has_conv, to_channels_last
from .prune.magnitude import prune_per_tensor
from .prune.masks import count_weights, global_sparsity, prunable, weight_state

# importing torch.utils.benchmark logs a CUDA_HOME notice on CPU machines: quieten it first
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402  (after the logger above)

MIB = 2 ** 20

def count_params(model: nn.Module) -> int:
    """All parameters (weights, biases, norm scales)."""
    return sum(p.numel() for p in model.parameters())

def count_nonzero(model: nn.Module) -> int:
    """Nonzero parameters."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())

def layer_table(model: nn.Module) -> list[dict]:
    """One dict per Conv/Linear layer: layer, shape, params, zeros, sparsity."""
    layers = [(name, m.weight, int((m.weight == 0).sum())) for name, m in prunable(model).items()]
    return [dict(layer=name, shape=tuple(w.shape), params=w.numel(), zeros=z,
                 sparsity=z / w.numel()) for name, w, z in layers]

def gzip_bytes(model: nn.Module) -> int:
    """Bytes of the gzipped torch.save of the state dict (without mask buffers)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in weight_state(model).items()}, buf)
    return len(gzip.compress(buf.getvalue(), compresslevel=6))

def size_table(model: nn.Module, reference: nn.Module | None = None) -> dict:
    """{dense, nonzero, csr, bitmask, gzip, physical}_mib of `model` (csr, bitmask: of the
    Conv/Linear weights, the rest dense); `reference`: the dense original (for dense_mib)."""
    counted = {id(m.weight) for m in prunable(model).values()}
    other = sum(p.numel() for p in model.parameters() if id(p) not in counted) * 4
    nnz = [(int(torch.count_nonzero(m.weight)), m.weight) for m in prunable(model).values()]
    csr = sum(n * 8 + (w.shape[0] + 1) * 4 for n, w in nnz)
    bitmask = sum(n * 4 + math.ceil(w.numel() / 8) for n, w in nnz)
    dense = count_params(reference if reference is not None else model)
    return dict(dense_mib=dense * 4 / MIB, nonzero_mib=count_nonzero(model) * 4 / MIB,
                csr_mib=(other + csr) / MIB, bitmask_mib=(other + bitmask) / MIB,
                gzip_mib=gzip_bytes(model) / MIB, physical_mib=count_params(model) * 4 / MIB)

def disk_mib(model: nn.Module, fmt: str = "best") -> float:
    """MiB on disk of `model` saved by labkit.sparse.save in `fmt`."""
    with tempfile.TemporaryDirectory(prefix="labkit-disk-") as tmp:
        return sparse.save(model, Path(tmp) / "m.lks", fmt)["bytes"] / MIB

def disk_report(model: nn.Module) -> dict:
    """{fmt}_disk_mib (sparse.save in csr, bitmask, dense, best) beside size_table's csr_mib,
    bitmask_mib, dense_mib (no buffers, no header) and buffers_mib (buffers but masks)."""
    theory = size_table(model)
    out = {k: theory[k] for k in ("csr_mib", "bitmask_mib", "dense_mib")}
    out |= {f"{fmt}_disk_mib": disk_mib(model, fmt) for fmt in sparse.FORMATS}
    out["buffers_mib"] = sum(b.numel() * b.element_size() for n, b in model.named_buffers()
                             if not n.endswith("weight_mask")) / MIB
    return out

@torch.no_grad()
def macs(model: nn.Module, input_shape: tuple) -> dict:
    """Multiply-accumulates of one forward pass of a (1, *input_shape) input:
    {'macs': dense MACs, 'nonzero_macs': MACs with zero weights skipped}."""
    check_input(model, input_shape)
    was_training = model.training
    model.eval()
    x = torch.zeros((1, *input_shape), device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    counts, total = counter.get_flop_counts(), counter.get_total_flops() / 2
    skipped = sum(sum(counts.get(f"{type(model).__name__}.{name}", {}).values()) / 2
                  * (1 - float(torch.count_nonzero(m.weight)) / m.weight.numel())
                  for name, m in prunable(model).items())
    return dict(macs=int(total), nonzero_macs=int(round(total - skipped)))

def _fastest(models: dict, input_shape: tuple, *, batch: int, device: str, threads: int | None,
             min_run_time: float, channels_last: bool, rounds: int, compile: bool) -> dict:
    """{name: seconds}: each model's fastest median over `rounds` passes over all models
    (warmed-up eval copies on `device`, a random (batch, *input_shape) input each)."""
    check_int("rounds", rounds, 1)
    if compile:
        torch.compiler.reset()
    dev, ready = torch.device(device), {}
    for name, model in models.items():
        m = copy.deepcopy(model).to(dev).eval()
        x = torch.randn((batch, *input_shape), device=dev)
        if channels_last and has_conv(m) and x.ndim == 4:
            m, x = to_channels_last(m), x.contiguous(memory_format=torch.channels_last)
        if compile:
            m = torch.compile(m)
        # freezing: weights become constants (BN folds into the conv, conv weights prepacked);
        # each compiled copy is one more cache entry of the same forward: a higher limit
        with torch.inference_mode(), inductor_config.patch(freezing=True), \
                dynamo_config.patch(recompile_limit=max(64, dynamo_config.recompile_limit)):
            for _ in range(3):
                m(x)
        ready[name] = m, x
    best = {name: math.inf for name in models}
    for _ in range(rounds):
        for name, (m, x) in ready.items():
            timer = benchmark.Timer(stmt="m(x)", globals={"m": m, "x": x},
                                    num_threads=threads or torch.get_num_threads())
            with torch.inference_mode():
                median = timer.blocked_autorange(min_run_time=min_run_time).median
            best[name] = min(best[name], median)
    return best

def latency(model: nn.Module, input_shape: tuple, *, batch: int = 1, device: str = "cpu",
            threads: int | None = None, min_run_time: float = 0.5, channels_last: bool = True,
            rounds: int = 1, compile: bool = False) -> float:
    """Median seconds of an inference forward on a random (batch, *input_shape) input
    (torch.utils.benchmark; conv models channels_last unless told not). rounds > 1: the fastest
    of that many medians. compile: torch.compile (inductor, freezing); needs a C++ compiler."""
    return _fastest({0: model}, input_shape, batch=batch, device=device, threads=threads,
                    min_run_time=min_run_time, channels_last=channels_last, rounds=rounds,
                    compile=compile)[0]

def measure(model: nn.Module, input_shape: tuple, reference: nn.Module | None = None,
            timing: bool = True, batch: int = 1, threads: int | None = None,
            min_run_time: float = 0.5, rounds: int = 1, disk: bool = False, csr: bool = False,
            time_reference: bool = False) -> dict:
    """THE measure of a model (what results.record stores): params, nonzeros, sparsity (zeros
    among the counted weights), size_table, macs; `reference` (the dense original of a smaller
    model): removed = 1 - counted weights / reference's. disk: disk_best_mib. timing:
    latency_cpu_ms (`threads`; None: torch's; the fastest of `rounds` medians), latency_threads,
    latency_cuda_ms on CUDA; csr: latency_best_ms, for an MLP also latency_csr_ms
    (sparse.to_csr); time_reference: latency_dense_ms of `reference`."""
    out = dict(params=count_params(model), nonzeros=count_nonzero(model),
               sparsity=global_sparsity(model), **size_table(model, reference),
               **macs(model, input_shape))
    if reference is not None:
        out["removed"] = 1 - count_weights(model)[1] / count_weights(reference)[1]
    if disk:
        out["disk_best_mib"] = disk_mib(model, "best")
    if not timing:
        return out
    t = dict(batch=batch, threads=threads, min_run_time=min_run_time, rounds=rounds)
    out["latency_cpu_ms"] = 1e3 * latency(model, input_shape, **t)
    out["latency_threads"] = threads
    if csr:
        out["latency_best_ms"] = out["latency_cpu_ms"]
        if isinstance(model, MLP):
            out["latency_csr_ms"] = 1e3 * latency(sparse.to_csr(model), input_shape, **t)
            out["latency_best_ms"] = min(out["latency_cpu_ms"], out["latency_csr_ms"])
    if time_reference and reference is not None:
        out["latency_dense_ms"] = 1e3 * latency(reference, input_shape, **t)
    if torch.cuda.is_available():
        out["latency_cuda_ms"] = 1e3 * latency(model, input_shape, device="cuda", **t)
    return out

def pareto_front(points) -> list[int]:
    """Indices of the non-dominated finite (cost, accuracy) pairs (lower cost, higher accuracy
    better) by cost, then accuracy descending, then index; exact duplicates all kept."""
    pts = []
    for i, p in enumerate(points):
        try:
            cost, acc = map(float, p)
        except (TypeError, ValueError):
            raise TypeError(f"point {i} must be a (cost, accuracy) pair of numbers, "
                            f"got {p!r}") from None
        if not (math.isfinite(cost) and math.isfinite(acc)):
            raise ValueError(f"point {i} = {p!r} is not finite; costs and accuracies must be "
                             "finite numbers")
        pts.append((cost, acc))
    order = sorted(range(len(pts)), key=lambda i: (pts[i][0], -pts[i][1], i))
    front, best = [], -math.inf
    for i in order:  # an exact duplicate of a frontier point joins it
        if pts[i][1] > best or (front and pts[front[-1]] == pts[i]):
            front.append(i)
            best = pts[i][1]
    return front

def relative_sparsity(model: nn.Module, reference: nn.Module) -> float:
    """1 - nonzero counted (Conv/Linear) weights of `model` / counted weights of
    `reference`: what is no longer held as nonzeros, removed or zeroed."""
    ref = count_weights(reference)[1]
    if ref == 0:
        raise ValueError(f"reference {type(reference).__name__} has no Conv/Linear weights")
    return 1 - count_weights(model)[0] / ref

def compare_latency(models: dict, input_shape: tuple, *, batch: int = 1, rounds: int = 3,
                    threads: int | None = None, min_run_time: float = 0.2,
                    channels_last: bool = True, compile: bool = False) -> dict[str, float]:
    """{name: ms}: CPU latency of the models side by side (`rounds` passes over all in turn,
    each one's fastest median kept: load hits every model alike); settings as in latency."""
    return {name: 1e3 * t for name, t in _fastest(
        models, input_shape, batch=batch, device="cpu", threads=threads, min_run_time=min_run_time,
        channels_last=channels_last, rounds=rounds, compile=compile).items()}

def _prune_linears(model: nn.Module, s: float) -> None:
    """csr_study's default pruning: per-tensor magnitude to `s` on every Linear."""
    prune_per_tensor(model, s, layers=[n for n, m in model.named_modules()
                                       if isinstance(m, nn.Linear)])

def csr_study(model: nn.Module, input_shape: tuple, sparsities, batches=(1, 256),
              prune=None, min_run_time: float = 0.3, threads: int | None = None) -> list[dict]:
    """CPU latency of dense vs CSR (sparse.to_csr) inference of `model` pruned by prune(model, s)
    (None: per-tensor magnitude on every Linear) for each sparsity s and batch size: one row
    {sparsity, batch, dense_ms, csr_ms, speedup (= dense / csr)} per (sparsity, batch)."""
    sparsities = [check_fraction("sparsity", s) for s in sparsities]
    batches = tuple(batches)
    if not batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batches):
        raise ValueError(f"batches={batches!r} must be positive integers")
    base = copy.deepcopy(model).cpu().eval()
    rows = []
    for s in sparsities:
        dense = copy.deepcopy(base)
        if s > 0:
            (prune or _prune_linears)(dense, s)
        small = sparse.to_csr(dense)
        for b in batches:
            d = latency(dense, input_shape, batch=b, threads=threads, min_run_time=min_run_time)
            c = latency(small, input_shape, batch=b, threads=threads, min_run_time=min_run_time)
            rows.append(dict(sparsity=s, batch=b, dense_ms=1e3 * d, csr_ms=1e3 * c, speedup=d / c))
    return rows

def crossover(rows: list[dict], batch: int) -> float | None:
    """The lowest sparsity from which CSR stays faster than dense (speedup > 1 there
    and at every higher measured sparsity) for `batch`; None if never."""
    pts = sorted((r["sparsity"], r["speedup"]) for r in rows if r["batch"] == batch)
    if not pts:
        raise ValueError(f"no rows for batch={batch!r}; "
                         f"batches present: {sorted({r['batch'] for r in rows})}")
    faster = list(itertools.takewhile(lambda p: p[1] > 1, reversed(pts)))
    return faster[-1][0] if faster else None
