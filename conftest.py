"""Loaded first by every pytest run (unit tests and nbval): caches and reports
go to a temporary folder, never into the repo, and progress bars are off.
Notebook kernels that nbval starts inherit these variables."""
import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="labkit-tests-")
os.environ["LABKIT_CACHE"] = os.path.join(_TMP, "cache")
os.environ["LABKIT_REPORTS"] = os.path.join(_TMP, "reports")
os.environ["LABKIT_PROGRESS"] = "0"
os.environ.setdefault("MPLBACKEND", "Agg")
