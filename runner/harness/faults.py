"""Fault injection, to test that gilmatrix loses nothing when a cell fails.

``GILMATRIX_FAULTS="crunch/threads/2=abort,3.13:fetch/sequential/1=hang"`` makes the named cells
misbehave inside their pyperf worker, where a real workload would: ``raise`` an exception,
``abort`` the interpreter (SIGABRT), ``hang`` forever, or exhaust ``memory``. The driver reads
the variable (pyperf strips its workers' environment) and passes the fault in the cell.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

MODES = ("raise", "abort", "hang", "memory")
ENV = "GILMATRIX_FAULTS"


class InjectedFault(RuntimeError):
    """Raised by the ``raise`` fault."""


def parse_faults(spec: str | None) -> dict[str, str]:
    faults: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        cell, _, mode = item.rpartition("=")
        if not cell or mode not in MODES:
            raise ValueError(f"{ENV}: {item!r} is not CELL=MODE with MODE in {', '.join(MODES)}")
        faults[cell] = mode
    return faults


def fault_for(faults: Mapping[str, str], interpreter: str, cell_id: str) -> str | None:
    return faults.get(f"{interpreter}:{cell_id}") or faults.get(cell_id)


def inject(mode: str) -> None:
    if mode == "raise":
        raise InjectedFault("injected fault: the workload raised")
    if mode == "abort":
        os.abort()
    if mode == "hang":
        while True:
            time.sleep(3600)
    if mode == "memory":
        hog = []
        while True:  # until the memory limit stops it: MemoryError, or the OOM killer
            hog.append(bytearray(64 * 1024 * 1024))
    raise ValueError(f"unknown fault {mode!r}")
