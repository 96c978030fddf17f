"""The report runner behind ``python -m labkit report``.

Runs the source notebooks with papermill into reports/<profile>/, exports
HTML next to each, and writes reports/<profile>/README.md, an index linking
every report with its headline figure.

Each notebook runs staged, in reports/<profile>/.<name>.running/: its results
rows and figures go there (results.folder_for), and only a run that succeeds
swaps them, its notebook and its HTML in. A failing, timed-out or stopped run
leaves the lab's earlier rows, report and figures as they were, keeps its
partial output as <name>.FAILED.ipynb (and .html), and the run exits
non-zero: 1 when a notebook failed, 128 + the signal after Ctrl-C (130) or
SIGTERM (143), 75 when another run holds the profile (guard.profile_lock).
"""
from __future__ import annotations

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
    """Source notebooks in `folder`, sorted; `only` keeps those whose name
    starts with or contains one of the given strings."""
    books = sorted(p for p in Path(folder).glob("*.ipynb") if not p.name.startswith("."))
    if only:
        chosen = [p for p in books if any(p.stem.startswith(o) or o in p.stem for o in only)]
        unknown = [o for o in only if not any(p.stem.startswith(o) or o in p.stem for p in books)]
        if unknown:
            raise ValueError(f"--only {unknown} matches no notebook; "
                             f"have {[p.stem for p in books]}")
        books = chosen
    return books


def to_html(ipynb: Path) -> Path:
    """Export an executed notebook to HTML beside it (atomically)."""
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(ipynb), as_version=4))
    return atomic_write_text(body, ipynb.with_suffix(".html"))


def execute(src: Path, stage: Path, out_dir: Path, profile: str, parameters: dict,
            progress: bool, timeout: float) -> str | None:
    """Run `src` into stage/<name>.ipynb with the results and figures staged
    (kernel started in out_dir); None when it ran, else the error."""
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


def adopt_run(stage: Path, out_dir: Path, name: str, lab: str, base: list) -> int:
    """Swap a successful run in: its rows (results.adopt), its figures (they
    replace the lab's), its notebook and HTML. Returns earlier rows replaced."""
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
    return dropped


def keep_failed(stage: Path, out_dir: Path, name: str) -> str:
    """Keep a failed run's partial notebook as <name>.FAILED.ipynb and .html
    (nothing else of the run is kept); returns its name, '-' when papermill
    wrote none (an older failed attempt's files go either way)."""
    for suffix in (".ipynb", ".html"):
        (out_dir / f"{name}.FAILED{suffix}").unlink(missing_ok=True)
    partial = stage / f"{name}.ipynb"
    if not partial.exists():
        return "-"
    final = out_dir / f"{name}.FAILED.ipynb"
    os.replace(partial, final)
    to_html(final)
    return final.name


def run_one(src: Path, out_dir: Path, profile: str, parameters: dict, progress: bool = True,
            timeout: float = TIMEOUT, stop: guard.Guard | None = None) -> dict:
    """Execute one notebook staged; returns {'name', 'ok', 'seconds', 'error', 'output'}."""
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
        error = finish(stage, out_dir, name, lab, base)
    output = f"{name}.ipynb" if error is None else keep_failed(stage, out_dir, name)
    shutil.rmtree(stage, ignore_errors=True)
    return dict(name=name, ok=error is None, seconds=time.perf_counter() - t0, error=error,
                output=output)


def finish(stage: Path, out_dir: Path, name: str, lab: str, base: list) -> str | None:
    """Export a successful run's HTML and swap the run in; None when done,
    else the error (an unreadable notebook is kept as failed, nothing swapped)."""
    try:
        to_html(stage / f"{name}.ipynb")
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    dropped = adopt_run(stage, out_dir, name, lab, base)
    if dropped:
        print(f"  ({dropped} earlier results rows of lab {lab} replaced by this run)")
    return None


def _link(name: str) -> str:
    return f"[{name}]({name})" if name != "-" else "-"


def _status(r: dict, out_dir: Path) -> tuple[str, str]:
    """An index row's status text and the report it links."""
    earlier = "" if r["seconds"] is not None else " (earlier run)"
    if r["ok"]:
        return "ok" + earlier, r["output"]
    status = "FAILED" + (f" ({r['error']})" if r.get("error") else earlier)
    if (out_dir / f"{r['name']}.ipynb").exists():   # the last good run's report stays shown
        failed = f"{r['name']}.FAILED.ipynb"
        status += "; shown: the earlier good run" + (f"; failed attempt: {_link(failed)}"
                                                      if (out_dir / failed).exists() else "")
        return status, f"{r['name']}.ipynb"
    return status, r["output"]


def write_index(out_dir: Path, profile: str, runs: list[dict]) -> Path:
    """reports/<profile>/README.md: lab 05's comparison figure on top (when it
    exists), a row per notebook, and each lab's headline figure. A lab whose
    latest run failed links its earlier good report and the failed attempt."""
    lines = [f"# labkit report, profile `{profile}`", "",
             f"Generated by `python -m labkit report --profile {profile}` "
             f"at git {config.git_commit()}.",
             "Every number in these reports names its dataset (real, subset or synthetic), "
             "profile and device.", ""]
    # the comparison of every method goes on top
    if (out_dir / "figures" / "05_headline.png").exists():
        lines += ["## Every method on one frontier (lab 05)", "",
                  "![05_headline](figures/05_headline.png)", ""]
    lines += ["| notebook | status | minutes | report | html |", "|---|---|---|---|---|"]
    ran = {r["name"] for r in runs}
    earlier = {}   # --only keeps the other labs in the index
    for p in sorted(out_dir.glob("*.ipynb")):
        name, failed = p.stem.replace(".FAILED", ""), p.stem.endswith(".FAILED")
        if not p.name.startswith(".") and name not in ran and (failed or name not in earlier):
            # .FAILED is the newer
            earlier[name] = dict(name=name, ok=not failed, seconds=None, output=p.name)
    for r in sorted(list(runs) + list(earlier.values()), key=lambda r: r["name"]):
        status, report = _status(r, out_dir)
        minutes = "-" if r["seconds"] is None else f"{r['seconds'] / 60:.1f}"
        html = Path(report).with_suffix(".html").name if report != "-" else "-"
        lines.append(f"| {r['name']} | {status} | {minutes} | {_link(report)} | {_link(html)} |")
    timed = [r["seconds"] for r in runs if r["seconds"] is not None]
    if timed:
        lines += ["", f"Total: {sum(timed) / 60:.1f} min for the {len(timed)} notebook(s) "
                      f"of this run, "
                      f"on {config.device_name(config.choose_device())}."]
    figures = (sorted((out_dir / "figures").glob("*_headline.png"))
               if (out_dir / "figures").exists() else [])
    for fig in (f for f in figures if f.name != "05_headline.png"):   # 05's is on top
        lines += ["", f"### {fig.stem.replace('_headline', '')}", "",
                  f"![{fig.stem}](figures/{fig.name})"]
    return atomic_write_text("\n".join(lines) + "\n", out_dir / "README.md")


def run(profile: str = "smoke", only: list | None = None, notebooks: Path | None = None,
        parameters: dict | None = None, progress: bool = True, timeout: float = TIMEOUT) -> int:
    """Run the report; returns the exit status (0 when every notebook ran, 1
    when one failed, 128 + signal when stopped; ProfileBusy when another run
    holds the profile)."""
    if profile not in config.PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {config.PROFILES}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout={timeout!r} must be a positive number of seconds per cell")
    # the runner writes <root>/reports/<profile>/ unless told otherwise (a notebook
    # run by hand, without the runner, writes under reports/interactive/)
    os.environ.setdefault("LABKIT_REPORTS", str(config.ROOT / "reports"))
    books = find_notebooks(notebooks or NOTEBOOKS, only)
    out_dir = config.reports_root() / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    # Kernels start in out_dir: hand them absolute data/cache/report paths.
    os.environ["LABKIT_DATA"] = str(config.data_root())
    os.environ["LABKIT_CACHE"] = str(config.cache_root())
    os.environ["LABKIT_REPORTS"] = str(config.reports_root())
    os.environ["LABKIT_PROGRESS"] = "0"  # progress is the runner's; reports stay clean
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
    ap = argparse.ArgumentParser(prog="python -m labkit", description="labkit command line")
    sub = ap.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("report", help="run the notebooks into reports/<profile>/")
    rp.add_argument("--profile", default="smoke", choices=config.PROFILES)
    rp.add_argument("--only", nargs="*", help="notebook names or prefixes (e.g. 01 03)")
    rp.add_argument("--notebooks", type=Path,
                    help="folder of source notebooks (default: notebooks/)")
    rp.add_argument("--cifar10-folder", type=Path,
                    help="ImageFolder tree (train/, test/) to use as CIFAR-10 "
                         "(sets LABKIT_CIFAR10_FOLDER)")
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
    params = {}
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set {item!r} must look like KEY=VALUE")
        k, v = item.split("=", 1)
        params[k] = parse_value(v)
    try:
        return run(args.profile, args.only, args.notebooks, params, not args.no_progress,
                   args.timeout)
    except guard.ProfileBusy as e:
        print(f"labkit report: {e}", file=sys.stderr)
        return BUSY


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
