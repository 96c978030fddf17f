"""benchmarks/gpu.sh (the whole report on one GPU, then a summary) and its
summary, benchmarks/gpu_summary.py. The command itself runs here at the smoke
sizes on the CPU, into a temporary reports folder, on lab 01 and a failing
notebook: nbval runs every smoke notebook (make test), so each runs once there."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from labkit import report
from test_report import failing_notebook

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "benchmarks" / "gpu_summary.py"
NAMES = [p.stem for p in report.find_notebooks(report.NOTEBOOKS)]
LAB01 = "01_mnist_weight_vs_unit_pruning"


def summarize(folder: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SUMMARY), str(folder), *args],
                          capture_output=True, text=True, timeout=60)


def line_of(text: str, name: str) -> list:
    return next(line.split() for line in text.splitlines() if line.startswith(name + " "))


def fabricate(folder: Path, runs: list, rows: list) -> None:
    """A report folder: the runner's own index of `runs`, and results rows."""
    folder.mkdir(parents=True)
    report.write_index(folder, "full", runs)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_summary_minutes_median_images_per_s_and_total(tmp_path):
    runs = [dict(name="01_mlp", ok=True, seconds=90, error=None, output="01_mlp.ipynb"),
            dict(name="02_vgg", ok=True, seconds=30, error=None, output="02_vgg.ipynb")]
    rows = [dict(lab="01", images_per_s=v) for v in (100.0, 1000.0, 200.0, 300.0)]
    rows += [dict(lab="01", accuracy=0.9), dict(lab="02", accuracy=0.5, images_per_s=None)]
    fabricate(tmp_path / "full", runs, rows)
    proc = summarize(tmp_path / "full")
    assert proc.returncode == 0, proc.stderr
    assert line_of(proc.stdout, "01_mlp")[1:5] == ["1.50", "250", "(4)", "ok"]   # the median
    assert line_of(proc.stdout, "02_vgg")[1:4] == ["0.50", "n/a", "ok"]
    assert line_of(proc.stdout, "total")[1] == "2.00"
    # the runner's log gives whole seconds, ahead of the index's tenths of a minute
    log = tmp_path / "log"
    log.write_text("[1/2] 01_mlp.ipynb (profile full) ...\n[1/2] 01_mlp: ok in 93 s\n")
    proc = summarize(tmp_path / "full", "--log", str(log))
    assert line_of(proc.stdout, "01_mlp")[1] == "1.55"
    assert line_of(proc.stdout, "total")[1] == "2.05"


def test_summary_fails_on_a_failed_notebook_or_a_missing_index(tmp_path):
    runs = [dict(name="01_mlp", ok=False, seconds=12, error="CellTimeoutError: | x", output="-")]
    fabricate(tmp_path / "full", runs, [])
    proc = summarize(tmp_path / "full")
    assert proc.returncode == 1
    assert line_of(proc.stdout, "01_mlp")[1:4] == ["0.20", "n/a", "FAILED"]
    proc = summarize(tmp_path / "nothing")
    assert proc.returncode == 2 and "no index" in proc.stderr


def gpu_sh(tmp_path: Path, *args, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "OUT"}
    base.update(PYTHON=sys.executable, LABKIT_REPORTS=str(tmp_path / "reports"),
                LABKIT_CACHE=str(tmp_path / "cache"), GPU_LOG=str(tmp_path / "gpu.log"), **env)
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), *args], env=base,
                          capture_output=True, text=True, timeout=1200)


def test_missing_papermill_without_wheels_is_a_clear_error(tmp_path):
    fake = tmp_path / "fake" / "papermill"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no papermill here')\n")
    (tmp_path / "wheels").mkdir()
    proc = gpu_sh(tmp_path, "smoke", PYTHONPATH=str(fake.parent),
                  GPU_WHEELS=str(tmp_path / "wheels"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot import papermill" in proc.stderr and "gpu.sh prepare" in proc.stderr
    assert not (tmp_path / "reports").exists()


def test_gpu_command_runs_the_smoke_report_end_to_end(tmp_path, capsys):
    """The command at the smoke sizes (through gpu.sh, on the CPU) checks the runner: a
    deliberately failing notebook is kept and marked, lab 01 runs after it intact, exit is
    non-zero; the summary lists each notebook's minutes, lab 01's images/s and the total."""
    committed = (ROOT / "reports" / "smoke" / "README.md").read_bytes()
    books = tmp_path / "notebooks"
    books.mkdir()
    shutil.copy(report.NOTEBOOKS / f"{LAB01}.ipynb", books)
    failing_notebook(books / "00_fails.ipynb")
    t0 = time.perf_counter()
    proc = gpu_sh(tmp_path, "smoke", "--notebooks", str(books))
    out, out_dir = proc.stdout, tmp_path / "reports" / "smoke"
    with capsys.disabled():  # the smoke report's timings belong in the CI log
        print("\n" + "\n".join(l for l in out.splitlines() if l.startswith(("[", "report in"))))
    assert proc.returncode == 1, out[-3000:] + proc.stderr[-3000:]
    assert "1 failed (00_fails)" in out
    failed = json.loads((out_dir / "00_fails.FAILED.ipynb").read_text())
    assert "partial output before the failure" in json.dumps(failed)  # partial output kept
    assert (out_dir / "00_fails.FAILED.html").exists()
    for name in [LAB01]:                # the real notebook ran after the failure, without error
        done = out_dir / f"{name}.ipynb"
        assert done.exists() and done.with_suffix(".html").exists(), name
        cells = json.loads(done.read_text())["cells"]
        assert not any(o.get("output_type") == "error" for c in cells for o in c.get("outputs", []))
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert rows and all(r["profile"] == "smoke" and r["synthetic"] for r in rows)
    assert "cuda available" in out and "== summary" in out
    summary = out[out.index("== summary"):]
    assert "00_fails" in summary and "FAILED" in line_of(summary, "00_fails")
    minutes = [float(line_of(summary, name)[1]) for name in ("00_fails", LAB01)]
    assert all(m > 0 for m in minutes) and not any(n in summary for n in NAMES if n != LAB01)
    assert line_of(summary, LAB01)[2] != "n/a"
    total = float(line_of(summary, "total")[1])
    assert total >= sum(minutes) - 0.02 and total < (time.perf_counter() - t0) / 60
    assert (ROOT / "reports" / "smoke" / "README.md").read_bytes() == committed
