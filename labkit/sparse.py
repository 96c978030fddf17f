"""Really smaller: a sparse file format (save, read, load) and CSR inference (to_csr).

A file is MAGIC, the header's length (uint64), a JSON header (tensors, the payload's sha256)
and the payload: each tensor's raw little-endian parts in header order."""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .io import atomic_write_bytes
from .prune.masks import prunable, set_mask, weight_state

MAGIC = b"LKSPARSE1\n"
FORMATS = ("csr", "bitmask", "dense", "best")
_DTYPES = {str(t): t for t in (torch.float32, torch.float16, torch.bfloat16, torch.float64,
                               torch.int64, torch.int32, torch.uint8, torch.bool)}

def _raw(t: torch.Tensor) -> bytes:
    """The bytes of a tensor (bool as uint8)."""
    t = t.detach().cpu().contiguous().reshape(-1)
    return (t.to(torch.uint8) if t.dtype == torch.bool else t).view(torch.uint8).numpy().tobytes()

def _from_raw(buf: bytes, dtype: torch.dtype, shape=(-1,)) -> torch.Tensor:
    """A tensor of `dtype` and `shape` copied from `buf`."""
    if not buf:
        return torch.zeros([0 if d == -1 else d for d in shape], dtype=dtype)
    store = torch.uint8 if dtype == torch.bool else dtype
    return torch.frombuffer(bytearray(buf), dtype=store).reshape(shape).to(dtype)

def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """bool (n,) -> uint8 (ceil(n/8),), bit i of byte j = mask[8j + i]."""
    return torch.from_numpy(np.packbits(mask.flatten().bool().numpy(), bitorder="little"))

def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    """uint8 (ceil(n/8),) -> bool (n,), the inverse of :func:`pack_bits`."""
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=n, bitorder="little")).bool()

def _encode(name: str, t: torch.Tensor, fmt: str) -> tuple[dict, list[bytes]]:
    """Header entry and byte chunks of one tensor in `fmt`: dense (data), csr of t viewed as
    (rows, rest) (values (nnz,), col (nnz,) int32, rowptr (rows+1,) int32) or bitmask (values
    (nnz,), bits (ceil(n/8),) uint8)."""
    w = t.detach().cpu()
    if fmt == "dense":
        parts = {"data": w}
    elif fmt == "csr":
        w2 = w.reshape(w.shape[0], -1)
        rows, cols = torch.nonzero(w2 != 0, as_tuple=True)
        rowptr = torch.cat([cols.new_zeros(1), torch.cumsum((w2 != 0).sum(1), 0)])
        parts = dict(values=w2[rows, cols], col=cols.to(torch.int32), rowptr=rowptr.to(torch.int32))
    else:
        nz = w.flatten() != 0
        parts = dict(values=w.flatten()[nz], bits=pack_bits(nz))
    chunks = {k: _raw(v) for k, v in parts.items()}
    entry = dict(name=name, fmt=fmt, dtype=str(t.dtype), shape=list(t.shape),
                 parts={k: len(v) for k, v in chunks.items()})
    return entry, list(chunks.values())

def _decode(entry: dict, chunks: dict) -> torch.Tensor:
    """The dense tensor of one header entry, from its byte chunks {part: bytes}."""
    dtype, shape = _DTYPES[entry["dtype"]], tuple(entry["shape"])
    if entry["fmt"] == "dense":
        return _from_raw(chunks["data"], dtype, shape)
    n, values = math.prod(shape), _from_raw(chunks["values"], dtype)
    if entry["fmt"] == "csr":
        rows, col = shape[0], _from_raw(chunks["col"], torch.int32).long()
        rowptr = _from_raw(chunks["rowptr"], torch.int32, (rows + 1,)).long()
        out = torch.zeros(rows, n // rows if rows else 0, dtype=dtype)
        out[torch.repeat_interleave(torch.arange(rows), rowptr[1:] - rowptr[:-1]), col] = values
        return out.reshape(shape)
    out = torch.zeros(n, dtype=dtype)
    out[unpack_bits(_from_raw(chunks["bits"], torch.uint8), n)] = values
    return out.reshape(shape)

def save(model: nn.Module, path: Path | str, fmt: str = "best") -> dict:
    """Write `model`'s weights (no masks) to `path` atomically, Conv/Linear weights in `fmt`
    (FORMATS), others dense. Returns {path, bytes, header_bytes, formats: {weight: fmt}}."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r} is not one of {FORMATS}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    counted = {f"{n}.weight" for n in prunable(model)}
    entries, chunks = [], []
    for name, t in weight_state(model).items():
        f = fmt if name in counted else "dense"
        if f == "best":
            sizes = {k: sum(map(len, _encode("", t, k)[1])) for k in ("dense", "csr", "bitmask")}
            f = min(sizes, key=sizes.get)
        entry, parts = _encode(name, t, f)
        entries.append(entry)
        chunks += parts
    payload = b"".join(chunks)
    header = json.dumps(dict(tensors=entries, sha256=hashlib.sha256(payload).hexdigest()),
                        separators=(",", ":")).encode()
    blob = MAGIC + struct.pack("<Q", len(header)) + header + payload
    atomic_write_bytes(blob, path)
    return dict(path=Path(path), bytes=len(blob), header_bytes=len(MAGIC) + 8 + len(header),
                formats={e["name"]: e["fmt"] for e in entries if e["name"] in counted})

def read(path: Path | str) -> dict[str, torch.Tensor]:
    """The dense state dict in a sparse file; ValueError naming the file when it is not
    one, is truncated or fails its checksum."""
    path, raw = Path(path), Path(path).read_bytes()
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + 8:
        raise ValueError(f"{path} is not a labkit sparse file "
                         f"(expected it to start with {MAGIC!r})")
    start = len(MAGIC) + 8
    (hlen,) = struct.unpack("<Q", raw[len(MAGIC):start])
    try:
        header = json.loads(raw[start:start + hlen])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: corrupt header ({e})") from e
    payload = raw[start + hlen:]
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise ValueError(f"{path}: payload is truncated or corrupt (sha256 mismatch)")
    state, pos = {}, 0
    for entry in header["tensors"]:
        ends = list(itertools.accumulate(entry["parts"].values(), initial=pos))
        parts = {k: payload[a:b] for k, a, b in zip(entry["parts"], ends, ends[1:])}
        state[entry["name"]], pos = _decode(entry, parts), ends[-1]
    return state

@torch.no_grad()
def load(model: nn.Module, path: Path | str, masks: bool = False) -> nn.Module:
    """Load a sparse file into `model` (same architecture) in place and return it; masks:
    also attach weight_mask buffers (weight != 0) to every Conv/Linear."""
    state = read(path)
    own = weight_state(model)
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit this {type(model).__name__}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, t in state.items():
        if tuple(own[name].shape) != tuple(t.shape):
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(t.shape)}, "
                             f"the model expects {tuple(own[name].shape)}")
        own[name].copy_(t)
    if masks:
        for m in prunable(model).values():
            set_mask(m, m.weight != 0)
    return model

class CSRLinear(nn.Module):
    """y = x @ W.T (+ b), W (out, in) a sparse CSR tensor: x (B, in) -> y (B, out) as
    (W_csr @ x.T).T with torch's sparse kernels. Inference only."""
    def __init__(self, linear: nn.Linear):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"CSRLinear wraps an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach().cpu().float()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
            self.weight = w.to_sparse_csr()
        self.bias = None if linear.bias is None else linear.bias.detach().cpu().float().clone()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in) -> y (B, out); ValueError for any other input shape."""
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"CSRLinear expects input (B, {self.in_features}), "
                             f"got {tuple(x.shape)}")
        y = torch.sparse.mm(self.weight, x.t()).t()
        return y + self.bias if self.bias is not None else y

    def __deepcopy__(self, memo):   # deepcopy cannot copy a sparse CSR tensor: clone it
        new = CSRLinear.__new__(CSRLinear)
        nn.Module.__init__(new)
        new.weight = self.weight.clone()
        new.bias = None if self.bias is None else self.bias.clone()
        new.in_features, new.out_features = self.in_features, self.out_features
        return new

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        sparsity = 1 - nnz / (self.in_features * self.out_features)
        return f"in={self.in_features}, out={self.out_features}, nnz={nnz} ({sparsity:.1%} sparse)"

def to_csr(model: nn.Module) -> nn.Module:
    """A CPU eval copy of `model` whose nn.Linear layers are CSRLinear (others kept)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    m = copy.deepcopy(model).cpu().eval()
    linears = [(n, mod) for n, mod in m.named_modules() if isinstance(mod, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to run in CSR")
    for name, lin in linears:
        parent_name, _, child = name.rpartition(".")
        parent = m.get_submodule(parent_name) if parent_name else m
        setattr(parent, child, CSRLinear(lin))
    return m
