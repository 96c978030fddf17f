"""``python -m labkit report ...``: see labkit.report. The report goes to
``<root>/reports/<profile>/`` unless $LABKIT_REPORTS says otherwise (a notebook
run by hand, without the runner, writes under reports/interactive/ instead)."""
import os
import sys

from .config import ROOT
from .report import main

os.environ.setdefault("LABKIT_REPORTS", str(ROOT / "reports"))
sys.exit(main())
