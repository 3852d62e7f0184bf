"""Deterministic log text for regex_scan (a helper module: not a workload itself)."""

from __future__ import annotations


def log_text(seed: int, lines: int) -> str:
    out = []
    for i in range(lines):
        n = seed * 7919 + i
        out.append(
            f"2026-{1 + n % 12:02d}-{1 + n % 28:02d} INFO order {n} by user{n % 97}@example.org "
            f"paid ${n % 500}.{n % 100:02d} via card ending {n % 10000:04d}"
        )
    return "\n".join(out)
