"""Results rows: one JSON line per measured model in reports/<profile>/results.jsonl, naming what
was measured on what, its setting (SETTINGS, docs/design.md), accuracy, sizes, MACs, latency.
Recording a KEY again replaces its row; writes are atomic and locked. The report runner stages
a run in $LABKIT_STAGE and :func:`adopt` swaps its rows in when it succeeded."""
import datetime as _dt
import fcntl
import json
import math
import os
from pathlib import Path

from . import config, train
from . import metrics as _metrics
from .io import atomic_write_text

SETTINGS = ("target_sparsity", "size_fraction", "channel_ratio", "lam", "compression")
KEY = ("lab", "method", "model", "seed") + SETTINGS
STAGE_ENV = "LABKIT_STAGE"

def folder_for(profile: str) -> Path:
    """Where a `profile` notebook writes results.jsonl and figures/: reports/<profile>/, or the
    runner's staging folder $LABKIT_STAGE when that lies directly in it."""
    config.check_choice("profile", profile, config.PROFILES)
    folder, stage = config.reports_root() / profile, os.environ.get(STAGE_ENV)
    return Path(stage) if stage and Path(stage).resolve().parent == folder.resolve() else folder

def path_for(profile: str) -> Path:
    """The results file of `profile`."""
    return folder_for(profile) / "results.jsonl"

def load(path: Path | str) -> list[dict]:
    """All rows of a results file ([] when there is none); ValueError naming a corrupt line."""
    path = Path(path)
    lines = path.read_text().splitlines() if path.exists() else []
    rows = []
    for i, line in enumerate(lines, 1):
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
    """A JSON-safe value: a 0-d tensor becomes a number, NaN/inf None, a tuple a list."""
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return [_clean(x) for x in v] if isinstance(v, (tuple, list)) else v

def record(cfg, data, *, method: str, model: str, accuracy: float, metrics: dict,
           accuracy_official: float | None = None, path: Path | str | None = None,
           **fields) -> dict:
    """Add (or replace) and return the row of one model. accuracy: on data.test (a fraction);
    accuracy_official: exactly when data has an official split; metrics: metrics.measure's
    dict; fields: at least one of SETTINGS (finite numbers; the others None), any extras."""
    for name, value in (("accuracy", accuracy), ("accuracy_official", accuracy_official)):
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
            raise ValueError(f"{name}={value!r} must be a fraction in [0, 1]")
    if accuracy is None:
        raise ValueError("accuracy=None: give the accuracy on data.test as a fraction in [0, 1]")
    official_set = getattr(data, "official_label", "") or None
    if (accuracy_official is None) != (getattr(data, "official", None) is None):
        raise ValueError(f"accuracy_official={accuracy_official!r}: give it exactly when data "
                         f"has an official split (here: {official_set or 'none'})")
    settings = {k: _clean(fields.pop(k, None)) for k in SETTINGS}
    if "point" in fields or all(v is None for v in settings.values()):
        raise ValueError(f"point={fields.get('point')!r}: name the row's setting instead, "
                         f"at least one of {SETTINGS}")
    for k, v in settings.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v)):
            raise ValueError(f"{k}={v!r} must be a finite number")
    row = dict(lab=cfg.lab, method=method, model=model, **settings, dataset=data.name,
               synthetic=data.synthetic, data_hash=data.hash, test_set=data.test_label,
               profile=cfg.profile, device=config.device_name(cfg.device), seed=cfg.seed,
               config=cfg.hash(), git=config.git_commit(), accuracy=float(accuracy),
               time=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               accuracy_official=None if accuracy_official is None else float(accuracy_official),
               official_set=official_set)
    row.update({k: _clean(v) for k, v in {**metrics, **fields}.items()})
    path = Path(path) if path is not None else path_for(cfg.profile)
    _rewrite(path, lambda rows: [r for r in rows if _key(r) != _key(row)] + [row])
    return row

def measure(cfg, net, *, method: str, model: str, reference=None, timing: bool = True,
            accuracy: float | None = None, accuracy_official: float | None = None,
            options: dict | None = None, **fields) -> dict:
    """THE way a notebook records a row: `net`'s accuracy on cfg.data.test and .official (each
    measured unless given), metrics.measure(net, shape, reference, timing, **options); record."""
    data = cfg.data
    if accuracy is None:
        accuracy = train.evaluate(net, data)
    if accuracy_official is None:
        accuracy_official = train.official(net, data)
    m = _metrics.measure(net, data.shape, reference=reference, timing=timing, **(options or {}))
    return record(cfg, data, method=method, model=model, accuracy=accuracy,
                  accuracy_official=accuracy_official, metrics=m, **fields)

STEP = ("acc_pruned", "drop", "acc_finetuned", "acc_before", "step", "total_epochs", "rewound",
        "seconds_per_epoch", "images_per_s")   # what a row keeps of a schedule step

def step_rows(cfg, steps: list[dict], nets: list, *, method: str, model: str,
              **fields) -> list[dict]:
    """One row per step of a pruning schedule: steps are methods.schedules.run's rows, nets the
    model after each step; accuracy is the fine-tuned one, target_sparsity the step's."""
    if len(steps) != len(nets):
        raise ValueError(f"{len(steps)} steps but {len(nets)} nets: give the model after each step")
    return [measure(cfg, m, method=method, model=model, timing=cfg.timing,
                    accuracy=r["acc_finetuned"], target_sparsity=r["sparsity"],
                    finetune_epochs=r["epochs"], **{k: r[k] for k in STEP}, **fields)
            for r, m in zip(steps, nets)]

def _rewrite(path: Path, change) -> list[dict]:
    """Replace the rows of `path` by change(rows) atomically under a file lock (notebooks may
    run side by side); returns the old rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = load(path)
        atomic_write_text(_lines(change(old)), path)
    return old

def _lines(rows: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)

def _key(row: dict) -> tuple:
    """The row's KEY values: rows with equal keys replace each other."""
    return tuple(row.get(k) for k in KEY)

def stage(path: Path | str, lab: str, staged: Path | str) -> list[dict]:
    """Start a staged run of `lab`: write the rows of `path` less `lab`'s to `staged`; returns
    them (the base :func:`adopt` compares the run's rows against)."""
    base = [r for r in load(path) if r.get("lab") != lab]
    atomic_write_text(_lines(base), staged)
    return base

def adopt(path: Path | str, lab: str, staged: Path | str, base: list[dict]) -> int:
    """Swap a successful staged run's rows into `path`: the rows of `staged` not in `base`
    replace every row of `lab` and any row with their key; returns how many of lab's went."""
    before = {json.dumps(r, sort_keys=True) for r in base}
    new = [r for r in load(staged) if json.dumps(r, sort_keys=True) not in before]
    keys = {_key(r) for r in new}
    old = _rewrite(Path(path), lambda rows: [r for r in rows if r.get("lab") != lab
                                             and _key(r) not in keys] + new)
    return sum(r.get("lab") == lab for r in old)

def table(rows: list[dict], columns: list[str], formats: dict | None = None) -> str:
    """A Markdown table of `columns` from `rows` (formats: {column: format spec}; None: '-')."""
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("-" if r.get(c) is None else format(r[c], formats.get(c, ""))
                                for c in columns) + " |" for r in rows]
    return "\n".join(lines)

def aggregate(rows: list[dict], by=None, fields=("accuracy",)) -> list[dict]:
    """One row per distinct `by` value (first-seen order; None: KEY but seed, missing = None):
    the `by` fields, n, seeds, <field>_mean and <field>_std (n - 1; None when n < 2) per field
    of `fields`, whose None values are left out; rows must have the `by` fields and `fields`."""
    if isinstance(by, str) or isinstance(fields, str):
        raise TypeError(f"by={by!r} and fields={fields!r} must be sequences of field names, "
                        f"not strings")
    strict, by = by is not None, tuple(k for k in KEY if k != "seed") if by is None else tuple(by)
    fields, groups = tuple(fields), {}
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise TypeError(f"row {i} is a {type(r).__name__}, not a dict")
        for k in (by if strict else ()) + fields:
            if k not in r:
                raise ValueError(f"row {i} has no field {k!r} (it has {sorted(r)})")
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, group in groups.items():
        agg = dict(zip(by, key), n=len(group), seeds=[r.get("seed") for r in group])
        for f in fields:
            vals = [r[f] for r in group if r[f] is not None]
            bad = [v for v in vals if isinstance(v, bool) or not isinstance(v, (int, float))]
            if bad:
                raise TypeError(f"row field {f!r} = {bad[0]!r} is not a number")
            mean = sum(vals) / len(vals) if vals else None
            std = (math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
                   if len(vals) >= 2 else None)
            agg[f"{f}_mean"], agg[f"{f}_std"] = mean, std
        out.append(agg)
    return out

def frontier(rows: list[dict], cost: str, accuracy: str = "accuracy_mean") -> list[dict]:
    """The rows on the Pareto frontier of (cost, accuracy), by cost; None costs or accuracies
    are left out."""
    for i, r in enumerate(rows):
        if cost not in r or accuracy not in r:
            raise ValueError(f"row {i} lacks {cost!r} or {accuracy!r} (it has {sorted(r)})")
    usable = [r for r in rows if r[cost] is not None and r[accuracy] is not None]
    return [usable[i] for i in _metrics.pareto_front([(r[cost], r[accuracy]) for r in usable])]

def finding(claim: str, holds: bool, measured: str) -> bool:
    """Print whether a study's finding `holds` in this run, with what was `measured` (a miss
    shows as plainly as a success); returns holds."""
    print(f"{'HOLDS ' if holds else 'MISSED'} | {claim} | measured: {measured}")
    return bool(holds)

def pct(fraction: float | None) -> float | None:
    """100 * fraction, None kept (a table shows it as '-')."""
    return None if fraction is None else 100 * fraction

def points(fraction: float) -> float:
    """A difference of accuracies (fractions) in points, rounded to 1e-6 so that a limit reads
    as written (0.9005 - 0.8905 is 1.0 point, not 1.0000000000000009)."""
    return round(100 * fraction, 6)
