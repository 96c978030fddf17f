"""A failed, timed-out, stopped or concurrent report run never costs the last
good report: the real runner (`python -m labkit report`) in a subprocess, on
small notebooks written here that record rows through labkit's real API."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

import labkit as lk
from labkit import report as runner

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 300   # seconds any runner subprocess may take before the test fails

# Kernel code: record one row of lab 91 (point P) and save its headline figure, through labkit's API.
RECORD = """\
import os, pathlib, time
from types import SimpleNamespace as NS
import torch
import labkit as lk
cfg = NS(lab="91", profile=profile, device=torch.device("cpu"), seed=0, hash=lambda: "cfg91")
data = NS(name="synthetic-test", synthetic=True, hash="d91", test_label="test")
def rec(point):
    lk.results.record(cfg, data, method="m", model="x", target_sparsity=point, accuracy=0.5, metrics=dict(params=1))
def fig(label):
    f = lk.plots.plt.figure(figsize=(2, 2)); f.text(0.5, 0.5, label); lk.plots.save(f, cfg, "headline")
"""


def notebook(path: Path, *cells: str) -> Path:
    """Write a notebook with papermill's parameters cell, the RECORD helpers and `cells`."""
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('profile = "smoke"')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(RECORD)] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def env_for(tmp_path: Path) -> dict:
    return dict(os.environ, LABKIT_REPORTS=str(tmp_path / "reports"), LABKIT_CACHE=str(tmp_path / "cache"))


def command(books: Path, *extra: str) -> list:
    return [sys.executable, "-m", "labkit", "report", "--profile", "smoke", "--notebooks", str(books),
            "--no-progress", *extra]


def report(tmp_path: Path, books: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the runner to the end (bounded by RUN_TIMEOUT)."""
    return subprocess.run(command(books, *extra), cwd=ROOT, env=env_for(tmp_path), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)


def start(tmp_path: Path, books: Path, log: Path) -> subprocess.Popen:
    """Start the runner in a session of its own, as a terminal would, output to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(command(books), cwd=ROOT, env=env_for(tmp_path), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(path: Path, proc: subprocess.Popen, log: Path, limit: float = RUN_TIMEOUT) -> str:
    """The text of `path` once the notebook has written it (fails if the runner ends first)."""
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, f"runner ended ({proc.returncode}) first:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {path.name} after {limit} s:\n{log.read_text()}"
        time.sleep(0.1)
    time.sleep(0.2)   # the marker is written in one call; let it land
    return path.read_text()


def group_gone(pgid: int) -> bool:
    """Whether no live (non-zombie) process is left in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return all(p.status() == psutil.STATUS_ZOMBIE for p in psutil.process_iter()
               if _pgid(p) == pgid)


def _pgid(p) -> int | None:
    try:
        return os.getpgid(p.pid)
    except ProcessLookupError:
        return None


def kill_leftovers(*pgids: int) -> None:
    for pgid in pgids:
        if pgid and not group_gone(pgid):
            os.killpg(pgid, signal.SIGKILL)


def seed_earlier_run(out_dir: Path) -> dict:
    """An earlier good run of lab 91 (plus a row of lab 92): its files' bytes by name."""
    (out_dir / "figures").mkdir(parents=True)
    rows = [dict(lab="91", method="m", model="x", target_sparsity=0.1, seed=0, accuracy=0.9),
            dict(lab="92", method="m", model="x", target_sparsity=0.1, seed=0, accuracy=0.8)]
    (out_dir / "results.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    (out_dir / "figures" / "91_headline.png").write_bytes(b"the good figure")
    (out_dir / "91_lab.ipynb").write_text('{"the": "good report"}')
    (out_dir / "91_lab.html").write_text("<p>the good report</p>")
    return snapshot(out_dir)


def snapshot(out_dir: Path) -> dict:
    names = ("results.jsonl", "figures/91_headline.png", "91_lab.ipynb", "91_lab.html")
    return {n: (out_dir / n).read_bytes() for n in names if (out_dir / n).exists()}


def rows_of(out_dir: Path) -> list:
    return lk.results.load(out_dir / "results.jsonl")


def index_line(out_dir: Path, name: str) -> str:
    return next(l for l in (out_dir / "README.md").read_text().splitlines() if l.startswith(f"| {name} |"))


def test_a_failed_rerun_keeps_the_earlier_rows_report_and_figures(tmp_path):
    books, out_dir = tmp_path / "notebooks", tmp_path / "reports" / "smoke"
    out_dir.mkdir(parents=True)
    (out_dir / "results.jsonl").write_text(json.dumps(dict(lab="92", method="m", target_sparsity=0.1)) + "\n")
    (out_dir / ".91_lab.running").mkdir()   # left by a killed run: cleared
    notebook(books / "91_lab.ipynb", "rec(0.1); rec(0.2); fig('good')")
    good = report(tmp_path, books)
    assert good.returncode == 0, good.stdout + good.stderr
    rows = rows_of(out_dir)
    assert [(r["lab"], r["target_sparsity"]) for r in rows] == [("92", 0.1), ("91", 0.1), ("91", 0.2)]
    assert not list(out_dir.glob(".*.running*"))
    before = snapshot(out_dir)
    assert len(before) == 4

    notebook(books / "91_lab.ipynb", "rec(0.3); fig('bad'); print('partial output')", "raise RuntimeError('boom')")
    bad = report(tmp_path, books)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "1 failed (91_lab)" in bad.stdout
    assert snapshot(out_dir) == before                      # rows, report, html, figure: byte-identical
    assert "partial output" in (out_dir / "91_lab.FAILED.ipynb").read_text()
    assert (out_dir / "91_lab.FAILED.html").exists()
    line = index_line(out_dir, "91_lab")
    assert "FAILED (PapermillExecutionError: RuntimeError: boom)" in line and "earlier good run" in line
    assert "[91_lab.FAILED.ipynb](91_lab.FAILED.ipynb)" in line and line.endswith("[91_lab.html](91_lab.html) |")
    assert not list(out_dir.glob(".*.running*"))

    notebook(books / "91_lab.ipynb", "rec(0.4); fig('better')")
    again = report(tmp_path, books)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(2 earlier results rows of lab 91 replaced by this run)" in again.stdout
    assert [(r["lab"], r["target_sparsity"]) for r in rows_of(out_dir)] == [("92", 0.1), ("91", 0.4)]
    assert (out_dir / "figures" / "91_headline.png").read_bytes() != before["figures/91_headline.png"]
    assert not (out_dir / "91_lab.FAILED.ipynb").exists() and not (out_dir / "91_lab.FAILED.html").exists()
    assert index_line(out_dir, "91_lab").startswith("| 91_lab | ok |")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_bc_a_signal_to_the_process_group_stops_the_run_and_keeps_the_earlier_one(tmp_path, sig):
    books, out_dir = tmp_path / "notebooks", tmp_path / "reports" / "smoke"
    before = seed_earlier_run(out_dir)
    marker = tmp_path / "running.txt"
    notebook(books / "91_lab.ipynb", "rec(0.5); fig('partial'); print('partial output')",
             f"pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
             "for _ in range(3000):\n    time.sleep(0.1)")
    log = tmp_path / "runner.log"
    proc = start(tmp_path, books, log)
    kernel = 0
    try:
        kernel = int(wait_for(marker, proc, log))
        os.killpg(proc.pid, sig)                              # what a terminal's Ctrl-C does
        status = proc.wait(timeout=10)                        # the bound
        out = log.read_text()
        assert status == 128 + sig, out
        assert group_gone(proc.pid), "a process of the runner's group is still alive"
        assert group_gone(kernel), "the kernel (a session of its own) is still alive"
        assert f"interrupted by {sig.name}" in out and f"91_lab: FAILED: interrupted by {sig.name}" in out
        assert snapshot(out_dir) == before                    # rows, report, html, figure: byte-identical
        assert "partial output" in (out_dir / "91_lab.FAILED.ipynb").read_text()
        assert (out_dir / "91_lab.FAILED.html").exists()
        assert "earlier good run" in index_line(out_dir, "91_lab")
        assert not list(out_dir.glob(".*.running*"))
    finally:
        kill_leftovers(proc.pid, kernel)


def test_d_a_second_run_of_the_same_profile_refuses_and_leaves_the_first_alone(tmp_path):
    books, out_dir = tmp_path / "notebooks", tmp_path / "reports" / "smoke"
    seed_earlier_run(out_dir)
    marker, release = tmp_path / "running.txt", tmp_path / "release"
    notebook(books / "91_lab.ipynb", "rec(0.6)",
             f"pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
             f"for _ in range(1200):\n    if pathlib.Path({str(release)!r}).exists(): break\n    time.sleep(0.1)",
             "rec(0.7); fig('first run')")
    other = notebook(tmp_path / "other" / "91_lab.ipynb", "rec(0.9)")
    log = tmp_path / "runner.log"
    proc = start(tmp_path, books, log)
    kernel = 0
    try:
        kernel = int(wait_for(marker, proc, log))
        during = snapshot(out_dir)
        second = report(tmp_path, other.parent)
        assert second.returncode == 75, second.stdout + second.stderr
        assert "another report run of 'smoke' is in progress" in second.stderr
        assert f"pid {proc.pid}" in second.stderr
        assert snapshot(out_dir) == during                   # the refused run touched nothing
        release.write_text("go")
        assert proc.wait(timeout=RUN_TIMEOUT) == 0, log.read_text()
    finally:
        kill_leftovers(proc.pid, kernel)
    assert sorted((r["lab"], r["target_sparsity"]) for r in rows_of(out_dir)) == [("91", 0.6), ("91", 0.7), ("92", 0.1)]
    assert not list(out_dir.glob(".*.running*"))


def test_a_hanging_cell_fails_at_the_timeout(tmp_path):
    books, out_dir = tmp_path / "notebooks", tmp_path / "reports" / "smoke"
    before = seed_earlier_run(out_dir)
    notebook(books / "91_lab.ipynb", "rec(0.5); print('partial output')", "time.sleep(600)")
    proc = report(tmp_path, books, "--timeout", "3")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "91_lab: FAILED: CellTimeoutError" in proc.stdout
    assert snapshot(out_dir) == before
    assert "partial output" in (out_dir / "91_lab.FAILED.ipynb").read_text()


def test_timeout_must_be_positive(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_REPORTS", str(tmp_path))
    with pytest.raises(SystemExit):
        runner.main(["report", "--timeout", "0"])
    assert "--timeout 0 must be a positive number" in capsys.readouterr().err
    with pytest.raises(ValueError, match="timeout=-1"):
        runner.run("smoke", timeout=-1)


def test_stage_and_adopt_swap_only_the_runs_rows(tmp_path, monkeypatch):
    main, staged = tmp_path / "smoke" / "results.jsonl", tmp_path / "smoke" / ".01_x.running" / "results.jsonl"
    main.parent.mkdir()
    old = [dict(lab="01", method="a", model="m", target_sparsity=1, seed=0), dict(lab="02", method="b", model="m", target_sparsity=1, seed=0),
           dict(lab="02", method="c", model="m", target_sparsity=1, seed=0)]
    main.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in old))
    base = lk.results.stage(main, "01", staged)
    assert base == old[1:] and lk.results.load(staged) == old[1:]
    monkeypatch.setenv("LABKIT_REPORTS", str(tmp_path))
    monkeypatch.setenv("LABKIT_STAGE", str(staged.parent))
    assert lk.results.path_for("smoke") == staged            # the run writes into its stage
    assert lk.results.path_for("cpu") == tmp_path / "cpu" / "results.jsonl"   # other profiles are not staged
    new = dict(lab="01", method="a", model="m", target_sparsity=2, seed=0)
    moved = dict(lab="02", method="c", model="m", target_sparsity=1, seed=0, accuracy=0.7)   # re-recorded by the run
    with open(staged, "a") as f:
        f.write(json.dumps(new, sort_keys=True) + "\n")
    lk.results._rewrite(staged, lambda rows: [r for r in rows if r["method"] != "c"] + [moved])
    assert lk.results.adopt(main, "01", staged, base) == 1
    assert lk.results.load(main) == [old[1], new, moved]
