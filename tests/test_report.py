"""The report runner's stamp and helpers. The runner end to end on the smoke profile
(a failing notebook kept and marked, the others intact) is checked by
tests/test_gpu_command.py, through benchmarks/gpu.sh, so the smoke notebooks run once there."""
import subprocess
from pathlib import Path

import nbformat

import labkit as lk

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


def test_stamp_commit_is_dirty_for_code_changes_but_not_for_reports(tmp_path, monkeypatch):
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
