"""Developer tools, run from a checkout and not shipped in the wheel: ``selfbench`` (gilmatrix
measures itself), ``rehearsal`` (the CI workflow replayed locally), ``synthetic`` (run folders
of known answers for report tests) and ``report_bench`` (the report builder at 10,000 cells)."""
