"""gilmatrix reports: results of one run -> tidy frame -> verdicts -> charts -> one static page.

Public API (what the CLI calls)::

    build_report(run_dir, out_dir, *, baseline=None) -> Path   # out_dir/index.html
    load_frame(run_dir) -> pandas.DataFrame                    # one row per measured value
"""

from __future__ import annotations

from gilmatrix.reports.render import build_report
from gilmatrix.reports.results import load_frame, load_run

__all__ = ["build_report", "load_frame", "load_run"]
