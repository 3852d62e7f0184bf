"""The harness: runs inside every benchmarked interpreter (CPython 3.10+, free-threaded too).

Standard library and pyperf only. Modules:
- ``workloads``: what is computed, and how each result is checked;
- ``executors``: how tasks are dispatched (sequential, threads, processes, ...);
- ``facts``: what the interpreter says about its own build;
- ``bench``: one cell as one pyperf benchmark (the pyperf worker program);
- ``drive`` (``python -m gilmatrix.harness``): runs a job's cells one by one, acting as each cell's
  pyperf manager (its worker processes in sessions of their own, under the cell's timeout and
  memory limit), and writes each result atomically as it finishes.
"""
