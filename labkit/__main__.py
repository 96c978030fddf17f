"""``python -m labkit report ...``: see labkit.report."""
import sys

from .report import main

sys.exit(main())
