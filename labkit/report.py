"""``python -m labkit report``: runs the notebooks with papermill into reports/<profile>/ (HTML
beside each, README.md an index), each staged in .<name>.running/: only a run that succeeds
swaps in its rows, figures and notebook; a failed one is kept as <name>.FAILED.ipynb. Exit
status: 0, 1 (a notebook failed), 128 + signal (stopped), 75 (another run holds the profile)."""
import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
from nbconvert import HTMLExporter

from . import config, guard, results
from .io import atomic_write_text

NOTEBOOKS = config.ROOT / "notebooks"
TIMEOUT = 3600  # seconds one cell may run before the notebook fails (--timeout)
BUSY = 75       # exit status when another run holds the profile (EX_TEMPFAIL)

def find_notebooks(folder: Path, only: list | None = None) -> list[Path]:
    """Source notebooks in `folder`, sorted; `only`: keep those whose name contains one of
    these strings (e.g. '01')."""
    books = sorted(p for p in Path(folder).glob("*.ipynb") if not p.name.startswith("."))
    unknown = [o for o in only or [] if not any(o in p.stem for p in books)]
    if unknown:
        raise ValueError(f"--only {unknown} matches no notebook; have {[p.stem for p in books]}")
    return [p for p in books if any(o in p.stem for o in only)] if only else books

def to_html(ipynb: Path) -> Path:
    """Export an executed notebook to HTML beside it (atomically)."""
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(ipynb), as_version=4))
    return atomic_write_text(body, ipynb.with_suffix(".html"))

def adopt_run(stage: Path, out_dir: Path, name: str, lab: str, base: list) -> str | None:
    """Export a successful run's HTML, then swap in its rows (results.adopt), its figures (they
    replace the lab's), notebook and HTML. None, or the error (then nothing is swapped)."""
    try:
        to_html(stage / f"{name}.ipynb")
    except Exception as e:   # an unreadable notebook is kept as failed
        return f"{type(e).__name__}: {e}"
    dropped = results.adopt(out_dir / "results.jsonl", lab, stage / "results.jsonl", base)
    figures = sorted((stage / "figures").glob("*.png"))
    (out_dir / "figures").mkdir(exist_ok=True)
    for old in (out_dir / "figures").glob(f"{lab}_*.png"):
        if old.name not in {f.name for f in figures}:
            old.unlink()
    for fig in figures:
        os.replace(fig, out_dir / "figures" / fig.name)
    for suffix in (".html", ".ipynb"):  # the notebook last: it marks the lab as done
        os.replace(stage / f"{name}{suffix}", out_dir / f"{name}{suffix}")
        (out_dir / f"{name}.FAILED{suffix}").unlink(missing_ok=True)
    if dropped:
        print(f"  ({dropped} earlier results rows of lab {lab} replaced by this run)")
    return None

def keep_failed(stage: Path, out_dir: Path, name: str) -> str:
    """Keep a failed run's partial notebook as <name>.FAILED.ipynb and .html (an older failed
    attempt's go either way); returns its name, '-' when papermill wrote none."""
    for suffix in (".ipynb", ".html"):
        (out_dir / f"{name}.FAILED{suffix}").unlink(missing_ok=True)
    if not (stage / f"{name}.ipynb").exists():
        return "-"
    os.replace(stage / f"{name}.ipynb", out_dir / f"{name}.FAILED.ipynb")
    to_html(out_dir / f"{name}.FAILED.ipynb")
    return f"{name}.FAILED.ipynb"

def execute(src: Path, stage: Path, out_dir: Path, profile: str, parameters: dict,
            progress: bool, timeout: float) -> str | None:
    """Execute `src` with papermill into `stage` (rows under $LABKIT_STAGE; the kernel starts
    in out_dir and is reaped after); None when it ran, else the error."""
    os.environ[results.STAGE_ENV] = str(stage)
    try:
        pm.execute_notebook(str(src), str(stage / src.name),
                            parameters=dict(profile=profile, **parameters),
                            cwd=str(out_dir), progress_bar=progress, kernel_name="python3",
                            execution_timeout=timeout,
                            kernel_manager_class=guard.TrackedKernelManager)
        return None
    except Exception as e:  # papermill writes the partial notebook before raising
        text = str(e).strip()
        return f"{type(e).__name__}: {text.splitlines()[-1] if text else ''}"
    finally:
        del os.environ[results.STAGE_ENV]
        guard.reap_kernels()

def run_one(src: Path, out_dir: Path, profile: str, parameters: dict, progress: bool = True,
            timeout: float = TIMEOUT, stop: guard.Guard | None = None) -> dict:
    """Run `src` staged in out_dir/.<name>.running/ (rows and figures too), then adopt or keep the
    run; returns {'name', 'ok', 'seconds', 'error', 'output'}."""
    stop = stop or guard.Guard()
    name, lab = src.stem, src.stem.split("_")[0]
    stage = out_dir / f".{name}.running"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    base = results.stage(out_dir / "results.jsonl", lab, stage / "results.jsonl")
    t0 = time.perf_counter()
    try:
        with stop.executing():
            error = execute(src, stage, out_dir, profile, parameters, progress, timeout)
    except guard.Stopped as e:
        error = f"interrupted by {e}"
    if error is not None and stop.signum is not None:  # the kernel the signal killed
        error = f"interrupted by {stop.name}"
    if error is None:
        error = adopt_run(stage, out_dir, name, lab, base)
    output = f"{name}.ipynb" if error is None else keep_failed(stage, out_dir, name)
    shutil.rmtree(stage, ignore_errors=True)
    return dict(name=name, ok=error is None, seconds=time.perf_counter() - t0, error=error,
                output=output)

def _link(name: str) -> str:
    return f"[{name}]({name})" if name != "-" else "-"

def _status(r: dict, out_dir: Path) -> tuple[str, str]:
    """An index row's status text and the report it links (a failed lab's last good one)."""
    earlier = "" if r["seconds"] is not None else " (earlier run)"
    if r["ok"]:
        return "ok" + earlier, r["output"]
    status = "FAILED" + (f" ({r['error']})" if r.get("error") else earlier)
    if not (out_dir / f"{r['name']}.ipynb").exists():
        return status, r["output"]
    failed = f"{r['name']}.FAILED.ipynb"
    status += "; shown: the earlier good run" + (f"; failed attempt: {_link(failed)}"
                                                  if (out_dir / failed).exists() else "")
    return status, f"{r['name']}.ipynb"

def write_index(out_dir: Path, profile: str, runs: list[dict]) -> Path:
    """reports/<profile>/README.md: lab 05's comparison figure on top (when it exists), a row
    per notebook (this run's, and the other labs' earlier ones), each lab's headline figure."""
    lines = [f"# labkit report, profile `{profile}`", "",
             f"Generated by `python -m labkit report --profile {profile}` "
             f"at git {config.git_commit()}.",
             "Every number in these reports names its dataset (real, subset or synthetic), "
             "profile and device.", ""]
    if (out_dir / "figures" / "05_headline.png").exists():
        lines += ["## Every method on one frontier (lab 05)", "",
                  "![05_headline](figures/05_headline.png)", ""]
    lines += ["| notebook | status | minutes | report | html |", "|---|---|---|---|---|"]
    ran, earlier = {r["name"] for r in runs}, {}
    for p in sorted(out_dir.glob("*.ipynb")):   # <name>.FAILED sorts after <name>: the newer
        name, failed = p.stem.replace(".FAILED", ""), p.stem.endswith(".FAILED")
        if not p.name.startswith(".") and name not in ran and (failed or name not in earlier):
            earlier[name] = dict(name=name, ok=not failed, seconds=None, output=p.name)
    for r in sorted(list(runs) + list(earlier.values()), key=lambda r: r["name"]):
        status, report = _status(r, out_dir)
        minutes = "-" if r["seconds"] is None else f"{r['seconds'] / 60:.1f}"
        html = Path(report).with_suffix(".html").name if report != "-" else "-"
        lines.append(f"| {r['name']} | {status} | {minutes} | {_link(report)} | {_link(html)} |")
    timed = [r["seconds"] for r in runs if r["seconds"] is not None]
    if timed:
        lines += ["", f"Total: {sum(timed) / 60:.1f} min for the {len(timed)} notebook(s) of "
                      f"this run, on {config.device_name(config.choose_device())}."]
    for fig in sorted((out_dir / "figures").glob("*_headline.png")):
        if fig.name != "05_headline.png":   # 05's is on top
            lines += ["", f"### {fig.stem.replace('_headline', '')}", "",
                      f"![{fig.stem}](figures/{fig.name})"]
    return atomic_write_text("\n".join(lines) + "\n", out_dir / "README.md")

def run(profile: str = "smoke", only: list | None = None, notebooks: Path | None = None,
        parameters: dict | None = None, progress: bool = True, timeout: float = TIMEOUT) -> int:
    """Run the report; returns the exit status (0 when every notebook ran, 1 when one failed,
    128 + signal when stopped); ProfileBusy when another run holds the profile."""
    config.check_choice("profile", profile, config.PROFILES)
    config.check_positive("timeout", timeout, what=" of seconds per cell")
    os.environ.setdefault("LABKIT_REPORTS", str(config.ROOT / "reports"))
    books = find_notebooks(notebooks or NOTEBOOKS, only)
    out_dir = config.reports_root() / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    # kernels start in out_dir: hand them absolute paths; progress is the runner's
    os.environ.update(LABKIT_DATA=str(config.data_root()), LABKIT_CACHE=str(config.cache_root()),
                      LABKIT_REPORTS=str(config.reports_root()), LABKIT_PROGRESS="0")
    if config.cifar10_folder() is not None:
        os.environ["LABKIT_CIFAR10_FOLDER"] = str(config.cifar10_folder())
    runs, t0 = [], time.perf_counter()
    with guard.profile_lock(out_dir), guard.Guard() as stop:
        for stale in out_dir.glob(".*.running*"):   # left by a killed run (we hold the lock)
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        for i, src in enumerate(books, 1):
            if stop.signum is not None:
                break
            print(f"[{i}/{len(books)}] {src.name} (profile {profile}) ...", flush=True)
            r = run_one(src, out_dir, profile, parameters or {}, progress, timeout, stop)
            runs.append(r)
            print(f"[{i}/{len(books)}] {src.stem}: {'ok' if r['ok'] else 'FAILED: ' + r['error']} "
                  f"in {r['seconds']:.0f} s", flush=True)
        write_index(out_dir, profile, runs)
    failed = [r["name"] for r in runs if not r["ok"]]
    print(f"\nreport in {out_dir}: " + (f"interrupted by {stop.name}; " if stop.signum else "")
          + f"{len(runs) - len(failed)} ok, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else "")
          + f"; total {time.perf_counter() - t0:.0f} s", flush=True)
    return 128 + stop.signum if stop.signum else (1 if failed else 0)

def parse_value(text: str):
    """A --set value: JSON when it parses (numbers, lists, true/null), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text

def main(argv: list | None = None) -> int:
    """The command line: ``python -m labkit report [--profile ...]``; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m labkit", description="labkit command line")
    rp = ap.add_subparsers(dest="command", required=True).add_parser(
        "report", help="run the notebooks into reports/<profile>/")
    rp.add_argument("--profile", default="smoke", choices=config.PROFILES)
    rp.add_argument("--only", nargs="*", help="notebook names or prefixes (e.g. 01 03)")
    rp.add_argument("--notebooks", type=Path,
                    help="folder of source notebooks (default: notebooks/)")
    rp.add_argument("--cifar10-folder", type=Path, help="ImageFolder tree (train/, test/) to use "
                    "as CIFAR-10 (sets LABKIT_CIFAR10_FOLDER)")
    rp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a notebook parameter, e.g. --set epochs=2 (repeatable)")
    rp.add_argument("--timeout", type=float, default=TIMEOUT, metavar="SECONDS",
                    help=f"fail a notebook when one cell runs longer than this (default {TIMEOUT})")
    rp.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if not args.timeout > 0:
        ap.error(f"--timeout {args.timeout:g} must be a positive number of seconds")
    if args.cifar10_folder is not None:
        os.environ["LABKIT_CIFAR10_FOLDER"] = str(args.cifar10_folder.resolve())
    bad = [item for item in args.set if "=" not in item]
    if bad:
        ap.error(f"--set {bad[0]!r} must look like KEY=VALUE")
    params = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    try:
        return run(args.profile, args.only, args.notebooks, params, not args.no_progress,
                   args.timeout)
    except guard.ProfileBusy as e:
        print(f"labkit report: {e}", file=sys.stderr)
        return BUSY
