"""What a pruned model costs: counts, sparsity, size, MACs, latency.

Size accounting (MiB = 2**20 bytes, 32-bit values, int32 indices):

| field        | meaning                                                         |
|--------------|-----------------------------------------------------------------|
| dense_mib    | parameters of the ORIGINAL architecture x 4 bytes               |
| nonzero_mib  | nonzero parameters x 4 bytes (no indices: a lower bound)        |
| csr_mib      | counted weights in CSR (values + column indices + row pointers) |
| bitmask_mib  | counted weights as nonzero values + a 1-bit mask                |
| gzip_mib     | bytes of the gzipped saved state dict (masks excluded)          |
| physical_mib | parameters of THIS model x 4 bytes (smaller after structured    |
|              | pruning; equal to dense_mib for a masked model)                 |

In csr/bitmask the other tensors (biases, norms) are stored dense.
MACs come from torch.utils.flop_counter (FLOPs / 2); nonzero MACs scale each
Conv/Linear layer's MACs by the density of its weight.
"""
from __future__ import annotations

import copy
import gzip
import io
import logging
import math

import torch
from torch import nn

from torch.utils.flop_counter import FlopCounterMode

from .models import check_input, has_conv, to_channels_last
from .prune.masks import count_weights, global_sparsity, prunable, weight_state

MIB = 2 ** 20


def count_params(model: nn.Module) -> int:
    """All parameters (weights, biases, norm scales)."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Nonzero parameters."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def layer_table(model: nn.Module) -> list[dict]:
    """One dict per Conv/Linear layer: name, shape, params, zeros, sparsity."""
    rows = []
    for name, m in prunable(model).items():
        n, z = m.weight.numel(), int((m.weight == 0).sum())
        rows.append(dict(layer=name, shape=tuple(m.weight.shape), params=n, zeros=z,
                         sparsity=z / n))
    return rows


def _csr_bytes(w: torch.Tensor) -> int:
    rows = w.shape[0]
    nnz = int(torch.count_nonzero(w))
    return nnz * 4 + nnz * 4 + (rows + 1) * 4


def _bitmask_bytes(w: torch.Tensor) -> int:
    return int(torch.count_nonzero(w)) * 4 + math.ceil(w.numel() / 8)


def gzip_bytes(model: nn.Module) -> int:
    """Bytes of the gzipped torch.save of the state dict (without mask buffers)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in weight_state(model).items()}, buf)
    return len(gzip.compress(buf.getvalue(), compresslevel=6))


def size_table(model: nn.Module, reference: nn.Module | None = None) -> dict:
    """The size fields (MiB) of `model`; `reference` is the original dense
    architecture when `model` is a structurally smaller one."""
    counted = {id(m.weight) for m in prunable(model).values()}
    other = sum(p.numel() for p in model.parameters() if id(p) not in counted) * 4
    weights = [m.weight.detach() for m in prunable(model).values()]
    return dict(
        dense_mib=count_params(reference if reference is not None else model) * 4 / MIB,
        nonzero_mib=count_nonzero(model) * 4 / MIB,
        csr_mib=(other + sum(_csr_bytes(w) for w in weights)) / MIB,
        bitmask_mib=(other + sum(_bitmask_bytes(w) for w in weights)) / MIB,
        gzip_mib=gzip_bytes(model) / MIB,
        physical_mib=count_params(model) * 4 / MIB,
    )


@torch.no_grad()
def macs(model: nn.Module, input_shape: tuple) -> dict:
    """Multiply-accumulates of one forward pass of a (1, *input_shape) input:
    {'macs': dense MACs, 'nonzero_macs': MACs with zero weights skipped}."""
    check_input(model, input_shape)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.zeros((1, *input_shape), device=device)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    counts = counter.get_flop_counts()
    total = counter.get_total_flops() / 2
    prefix = type(model).__name__
    skipped = 0.0
    for name, m in prunable(model).items():
        layer_macs = sum(counts.get(f"{prefix}.{name}", {}).values()) / 2
        density = float(torch.count_nonzero(m.weight)) / m.weight.numel()
        skipped += layer_macs * (1 - density)
    return dict(macs=int(total), nonzero_macs=int(round(total - skipped)))


def _check_rounds(rounds) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be a positive integer")


def _prepared(model: nn.Module, input_shape: tuple, batch: int, device, channels_last: bool,
              compile: bool) -> tuple:
    """(m, x) ready to time: an eval copy of `model` on `device` (channels_last for
    conv models when asked; torch.compile'd with inductor freezing when
    `compile`) and a random (batch, *input_shape) input, after a warm-up
    (which is when compilation happens)."""
    # imported here, not at the top: they are slow to import and only timing needs them
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    dev = torch.device(device)
    m = copy.deepcopy(model).to(dev).eval()
    x = torch.randn((batch, *input_shape), device=dev)
    if channels_last and has_conv(m) and x.ndim == 4:
        m, x = to_channels_last(m), x.contiguous(memory_format=torch.channels_last)
    if compile:
        m = torch.compile(m)
    # freezing: weights become constants, so BN folds into the conv and conv weights are prepacked;
    # each compiled copy is one more cache entry of the same forward, hence the higher limit
    with torch.inference_mode(), inductor_config.patch(freezing=True), \
            dynamo_config.patch(recompile_limit=max(64, dynamo_config.recompile_limit)):
        for _ in range(3):
            m(x)
    return m, x


def _median_seconds(m, x, threads: int | None, min_run_time: float) -> float:
    """Median seconds of m(x) under torch.inference_mode (torch.utils.benchmark)."""
    # quieten the logger before the import: importing torch.utils.benchmark logs a CUDA_HOME
    # notice on CPU machines (and at the top it would do so on ``import labkit``)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt="m(x)", globals={"m": m, "x": x},
                            num_threads=threads or torch.get_num_threads())
    with torch.inference_mode():
        return timer.blocked_autorange(min_run_time=min_run_time).median


def latency(model: nn.Module, input_shape: tuple, *, batch: int = 1, device: str = "cpu",
            threads: int | None = None, min_run_time: float = 0.5, channels_last: bool = True,
            rounds: int = 1, compile: bool = False) -> float:
    """Median seconds of one inference forward pass of `model` on a random
    (batch, *input_shape) input on `device`: eval mode, torch.inference_mode,
    conv models in the channels_last layout unless `channels_last=False`
    (torch.utils.benchmark, warm-up first, threads fixed; CUDA timings are
    synchronised). With `rounds` > 1, the fastest of that many medians: a burst
    of load on a shared machine inflates a median and never deflates it.

    compile=True times what a deployment would run: the copy is compiled by
    torch.compile (inductor, with freezing). This resets torch's compiler
    caches first (torch.compiler.reset), so functions compiled earlier in the
    process recompile on their next call. Needs a C++ compiler on CPU.
    """
    _check_rounds(rounds)
    if compile:
        torch.compiler.reset()
    m, x = _prepared(model, input_shape, batch, device, channels_last, compile)
    return min(_median_seconds(m, x, threads, min_run_time) for _ in range(rounds))


def measure(model: nn.Module, input_shape: tuple, reference: nn.Module | None = None,
            timing: bool = True, batch: int = 1) -> dict:
    """Everything results.record stores about a model: params, nonzeros,
    sparsity, the size table, MACs, and CPU (and CUDA) latency in ms."""
    out = dict(params=count_params(model), nonzeros=count_nonzero(model),
               sparsity=global_sparsity(model))
    out.update(size_table(model, reference))
    out.update(macs(model, input_shape))
    if timing:
        out["latency_cpu_ms"] = 1e3 * latency(model, input_shape, batch=batch, device="cpu")
        if torch.cuda.is_available():
            out["latency_cuda_ms"] = 1e3 * latency(model, input_shape, batch=batch, device="cuda")
    return out


def pareto_front(points) -> list[int]:
    """Indices of the non-dominated points of `points`, a sequence of
    (cost, accuracy) pairs (lower cost is better, higher accuracy is better),
    sorted by cost (ties in cost by descending accuracy, then by index).

    Point a is dominated when some other point b has cost_b <= cost_a and
    acc_b >= acc_a with at least one strict. Exact duplicates do not dominate
    each other: all copies of a non-dominated point are kept (in index order).
    Costs and accuracies must be finite real numbers.
    """
    pts = []
    for i, p in enumerate(points):
        try:
            cost, acc = p
            cost, acc = float(cost), float(acc)
        except (TypeError, ValueError):
            raise TypeError(f"point {i} must be a (cost, accuracy) pair of numbers, "
                            f"got {p!r}") from None
        if not (math.isfinite(cost) and math.isfinite(acc)):
            raise ValueError(f"point {i} = {p!r} is not finite; costs and accuracies must be "
                             "finite numbers")
        pts.append((cost, acc))
    order = sorted(range(len(pts)), key=lambda i: (pts[i][0], -pts[i][1], i))
    front, best = [], -math.inf
    for i in order:
        cost, acc = pts[i]
        if acc > best:
            front.append(i)
            best = acc
        elif front and pts[front[-1]] == (cost, acc):
            front.append(i)  # an exact duplicate of a frontier point
    return front


def relative_sparsity(model: nn.Module, reference: nn.Module) -> float:
    """Fraction of the reference's counted (Conv/Linear) weights that `model`
    no longer holds as nonzeros, whether removed physically or zeroed:
    1 - nonzero counted weights of model / counted weights of reference."""
    ref = count_weights(reference)[1]
    if ref == 0:
        raise ValueError(f"reference {type(reference).__name__} has no Conv/Linear weights")
    return 1 - count_weights(model)[0] / ref


def compare_latency(models: dict, input_shape: tuple, *, batch: int = 1, rounds: int = 3,
                    threads: int | None = None, min_run_time: float = 0.2,
                    channels_last: bool = True, compile: bool = False) -> dict[str, float]:
    """{name: milliseconds}: CPU latency of each model (a forward of a (batch,
    *input_shape) input, `threads` intra-op threads, default torch's) measured
    side by side: `rounds` passes over all models in turn, keeping each model's
    fastest median, so a burst of load on a shared machine hits every model
    alike instead of one. One thread is the steadier choice on a busy machine.
    `channels_last` and `compile` as in `latency`, the same for every model."""
    _check_rounds(rounds)
    if compile:
        torch.compiler.reset()
    ready = {name: _prepared(m, input_shape, batch, "cpu", channels_last, compile)
             for name, m in models.items()}
    best = {name: math.inf for name in models}
    for _ in range(rounds):
        for name, (m, x) in ready.items():
            best[name] = min(best[name], 1e3 * _median_seconds(m, x, threads, min_run_time))
    return best
