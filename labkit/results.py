"""One JSON line per measured model, in reports/<profile>/results.jsonl.

A row names what was measured and on what: lab, method, model, dataset (and
the label of its test set), profile, device, seed, plus sparsity, accuracy,
the size fields, MACs and latency. Rows are keyed by (lab, method, point,
seed): recording the same key again replaces the old row, so re-running a
notebook does not duplicate rows. Every write rewrites the file atomically.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path

from . import config
from .io import atomic_write_text

KEY = ("lab", "method", "point", "seed")


def path_for(profile: str) -> Path:
    """reports/<profile>/results.jsonl (under $LABKIT_REPORTS)."""
    if profile not in config.PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {config.PROFILES}")
    return config.reports_root() / profile / "results.jsonl"


def load(path: Path | str) -> list[dict]:
    """All rows of a results file ([] when it does not exist); a corrupt line
    raises ValueError naming the file and line number."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {i} is not valid JSON ({e.msg}): {line[:80]!r}") from e
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {i} is not a JSON object: {line[:80]!r}")
        rows.append(row)
    return rows


def _clean(v):
    """JSON-safe values: floats that are NaN/inf become None; tensors become numbers."""
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (tuple, list)):
        return [_clean(x) for x in v]
    return v


def record(cfg, data, *, method: str, model: str, point, accuracy: float, metrics: dict,
           path: Path | str | None = None, **extra) -> dict:
    """Add (or replace) the row of one measured model and return it.

    cfg: the notebook's Config; data: its Data (gives dataset name, hash, test label);
    point: what identifies this model within the method (e.g. the target sparsity);
    accuracy: test accuracy in [0, 1]; metrics: the dict of metrics.measure.
    """
    if not (isinstance(accuracy, (int, float)) and 0 <= accuracy <= 1):
        raise ValueError(f"accuracy={accuracy!r} must be a fraction in [0, 1]")
    row = dict(lab=cfg.lab, method=method, model=model, point=_clean(point), dataset=data.name,
               synthetic=data.synthetic, data_hash=data.hash, test_set=data.test_label,
               profile=cfg.profile, device=config.device_name(cfg.device), seed=cfg.seed,
               config=cfg.hash(), git=config.git_commit(), accuracy=float(accuracy),
               time=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    row.update({k: _clean(v) for k, v in metrics.items()})
    row.update({k: _clean(v) for k, v in extra.items()})
    path = Path(path) if path is not None else path_for(cfg.profile)
    rows = [r for r in load(path) if tuple(r.get(k) for k in KEY) != tuple(row[k] for k in KEY)]
    rows.append(row)
    atomic_write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), path)
    return row


def table(rows: list[dict], columns: list[str], formats: dict | None = None) -> str:
    """A Markdown table of `columns` from `rows` (formats: {column: format spec})."""
    formats = formats or {}

    def fmt(r, c):
        v = r.get(c)
        if v is None:
            return "-"
        return format(v, formats[c]) if c in formats else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r, c) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
