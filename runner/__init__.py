"""gilmatrix: how CPython's concurrency models behave across interpreter versions and builds.

This package is imported inside every benchmarked interpreter (3.10 and newer, free-threaded
builds included) because ``gilmatrix.harness`` lives below it: keep this module free of imports.
The folder runner/ is installed as the ``gilmatrix`` package, reports/ as ``gilmatrix.reports``.
"""

__version__ = "0.1.0"
