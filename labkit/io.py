"""Safe files: atomic writes (a temporary file, fsync, os.replace: never half a file) and cache
entries with a sha256 of their payload (a corrupt one is rebuilt, never used)."""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import torch

MAGIC = b"LABKIT1\n"

def atomic_write_bytes(data: bytes, path: Path | str) -> Path:
    """Write `data` to `path` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

def atomic_write_text(text: str, path: Path | str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(text.encode("utf-8"), path)

def atomic_save(obj, path: Path | str) -> Path:
    """torch.save `obj` to `path` atomically, with a sha256 of the payload in a header."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    header = MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    return atomic_write_bytes(header + payload, path)

def load_verified(path: Path | str):
    """The object atomic_save wrote at `path`, or None when the file is missing, truncated or
    fails its checksum (a warning says which)."""
    path = Path(path)
    if not path.exists():
        return None
    raw, head = path.read_bytes(), len(MAGIC) + 65
    digest, payload = raw[len(MAGIC):head - 1].decode(errors="replace"), raw[head:]
    if not (raw.startswith(MAGIC) and len(raw) > head
            and hashlib.sha256(payload).hexdigest() == digest):
        warnings.warn(f"cache entry {path} is corrupt or truncated (checksum mismatch); "
                      "rebuilding it")
        return None
    return torch.load(io.BytesIO(payload), weights_only=False)
