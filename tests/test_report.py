"""The report runner end to end on the smoke profile: every notebook runs, a
deliberately failing one is kept and marked, the others are intact, exit is non-zero."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def failing_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('profile = "smoke"')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# fails on purpose (smoke)"), p,
                nbformat.v4.new_code_cell('print("partial output before the failure")'),
                nbformat.v4.new_code_cell('raise RuntimeError("deliberate failure")')]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_smoke_report_end_to_end(tmp_path, capsys):
    books = tmp_path / "notebooks"
    books.mkdir()
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(nb, books / nb.name)
    failing_notebook(books / "00_fails.ipynb")
    env = dict(os.environ, LABKIT_REPORTS=str(tmp_path / "reports"), LABKIT_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "labkit", "report", "--profile", "smoke", "--notebooks",
                           str(books), "--no-progress"], env=env, capture_output=True, text=True, timeout=900)
    out_dir = tmp_path / "reports" / "smoke"
    with capsys.disabled():  # the smoke report's timings belong in the CI log
        print("\n" + "\n".join(l for l in proc.stdout.splitlines() if l.startswith(("[", "report in"))))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed (00_fails)" in proc.stdout
    failed = json.loads((out_dir / "00_fails.FAILED.ipynb").read_text())
    assert "partial output before the failure" in json.dumps(failed)  # partial output kept
    assert (out_dir / "00_fails.FAILED.html").exists()
    for nb in (ROOT / "notebooks").glob("*.ipynb"):  # every real notebook ran after the failure
        done = out_dir / nb.name
        assert done.exists() and done.with_suffix(".html").exists(), nb.name
        cells = json.loads(done.read_text())["cells"]
        assert not any(o.get("output_type") == "error" for c in cells for o in c.get("outputs", []))
    index = (out_dir / "README.md").read_text()
    assert "00_fails | FAILED" in index and "01_mnist_weight_vs_unit_pruning | ok" in index
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert rows and all(r["profile"] == "smoke" and r["synthetic"] for r in rows)


def test_stamp_commit_is_dirty_for_code_changes_but_not_for_reports(tmp_path, monkeypatch):
    import labkit as lk

    for var, val in (("GIT_AUTHOR_NAME", "t"), ("GIT_AUTHOR_EMAIL", "t@t"), ("GIT_COMMITTER_NAME", "t"),
                     ("GIT_COMMITTER_EMAIL", "t@t")):
        monkeypatch.setenv(var, val)
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "reports").mkdir()
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "reports" / "results.jsonl").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    monkeypatch.setattr(lk.config, "ROOT", tmp_path)
    clean = lk.config.git_commit()
    assert len(clean) >= 7 and not clean.endswith("+dirty")
    (tmp_path / "reports" / "results.jsonl").write_text("{}\n{}\n")    # what a report run does
    assert lk.config.git_commit() == clean
    (tmp_path / "code.py").write_text("a = 2\n")
    assert lk.config.git_commit() == clean + "+dirty"
