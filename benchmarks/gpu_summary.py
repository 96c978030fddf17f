"""The summary benchmarks/gpu.sh prints after a report run: per notebook its
minutes and images/s, and the total minutes.

    python benchmarks/gpu_summary.py REPORT_DIR [--log RUNNER_LOG]

REPORT_DIR is reports/<profile>/ as `python -m labkit report` leaves it. The
notebooks and their status come from its index README.md. Minutes come from the
runner's log lines "[i/n] <name>: ok in <s> s" when --log is given (whole
seconds), else from the index table (tenths of a minute; "-" for a notebook
this run did not run). images/s is the MEDIAN of `images_per_s` over the lab's
rows of REPORT_DIR/results.jsonl, "n/a" where no row has one; (n) counts them.

Exit status: 0 when every notebook in the index is ok, 1 when one is not,
2 when there is no index.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

HEADER = "| notebook | status | minutes | report | html |"
LOG_LINE = re.compile(r"^\[\d+/\d+\] (\S+): .* in (\d+) s$")


def index_rows(readme: Path) -> list[dict]:
    """The index table's rows: {'name', 'status', 'minutes' (None for '-')}."""
    lines = readme.read_text().splitlines()
    if HEADER not in lines:
        raise ValueError(f"{readme} has no table headed {HEADER!r}")
    rows = []
    for line in lines[lines.index(HEADER) + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        minutes = cells[-3]   # the status may hold a '|'; the last three cells are fixed
        rows.append(dict(name=cells[0], status="|".join(cells[1:-3]),
                         minutes=None if minutes == "-" else float(minutes)))
    return rows


def log_seconds(log: Path) -> dict:
    """{notebook: seconds} from the runner's lines in its log."""
    found = (LOG_LINE.match(line.strip()) for line in log.read_text(errors="replace").splitlines())
    return {m[1]: int(m[2]) for m in found if m}


def images_per_s(results: Path) -> dict:
    """{lab: [images_per_s, ...]} over the rows of results.jsonl that have it."""
    per_lab = {}
    if results.exists():
        for line in results.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            value = row.get("images_per_s")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                per_lab.setdefault(str(row.get("lab")), []).append(float(value))
    return per_lab


def summary(report_dir: Path, log: Path | None = None) -> tuple[str, bool]:
    """The summary text, and whether every notebook is ok."""
    rows = index_rows(report_dir / "README.md")
    seconds = log_seconds(log) if log is not None and log.exists() else {}
    speeds = images_per_s(report_dir / "results.jsonl")
    width = max([len(r["name"]) for r in rows] + [len("notebook")])
    out = [f"{'notebook':<{width}}  {'minutes':>7}  {'images/s (n)':>14}  status"]
    total = 0.0
    for r in rows:
        minutes = seconds[r["name"]] / 60 if r["name"] in seconds else r["minutes"]
        total += minutes or 0.0
        values = speeds.get(r["name"].split("_")[0], [])
        speed = f"{statistics.median(values):.0f} ({len(values)})" if values else "n/a"
        shown = "-" if minutes is None else f"{minutes:.2f}"
        out.append(f"{r['name']:<{width}}  {shown:>7}  {speed:>14}  {r['status']}")
    out.append(f"{'total':<{width}}  {total:>7.2f}")
    out.append("images/s: the median over the lab's results rows that have images_per_s; "
               "minutes: " + ("the runner's log" if seconds else "the index README.md"))
    return "\n".join(out), all(r["status"].startswith("ok") for r in rows)


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report_dir", type=Path, help="reports/<profile>/")
    ap.add_argument("--log", type=Path, help="the report runner's output")
    args = ap.parse_args(argv)
    if not (args.report_dir / "README.md").exists():
        print(f"gpu_summary: no index {args.report_dir / 'README.md'}: the report wrote none",
              file=sys.stderr)
        return 2
    text, ok = summary(args.report_dir, args.log)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
