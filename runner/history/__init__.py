"""The history of runs (gilmatrix.history.store) and what is built from it."""
