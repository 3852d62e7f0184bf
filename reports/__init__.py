"""gilmatrix reports: results of one run -> tidy frame -> verdicts -> charts -> one static page.

Public API (what the CLI calls)::

    build_report(run_dir, out_dir, *, baseline=None) -> Path   # out_dir/index.html
    load_frame(run_dir) -> pandas.DataFrame                    # one row per measured value

Imported when first asked for: pandas and the analysis weigh ~100 MB, and a module such as
``bundle`` (the history's site uses it) is imported without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gilmatrix.reports.render import build_report
    from gilmatrix.reports.results import load_frame, load_run

__all__ = ["build_report", "load_frame", "load_run"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from gilmatrix.reports import render

        return render.build_report
    if name in ("load_frame", "load_run"):
        from gilmatrix.reports import results

        return getattr(results, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
