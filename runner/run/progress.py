"""The run's console progress (stderr): a line per finished cell, per round and per window,
with the time spent and the scheduler's estimate of the time left. Stage: run."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60:02d}:{seconds % 60:02d}"
    )


class Progress:
    """One line per finished cell and per round (and window): where we are, how long it took,
    roughly how long is left (the scheduler's estimate). ``total`` is the cells that will
    really run — known once every interpreter is prepared (skipped cells, and a resumed run's
    cells done before, are announced apart and never counted)."""

    def __init__(self, total: int = 0, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.start = time.monotonic()
        self.remaining: float | None = None  # the scheduler's estimate of the time left

    def line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def cell(self, interp: str, event: dict[str, Any]) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        left = "" if self.remaining is None else f", ~{fmt_duration(self.remaining)} left"
        took = f" {event['elapsed']:.1f}s" if event.get("elapsed") is not None else ""
        took += f", {event['note']}" if event.get("note") else ""
        reason = f" — {event['reason']}" if event.get("reason") else ""
        self.line(
            f"[{self.done:>{len(str(self.total))}}/{self.total} {fmt_duration(elapsed)}{left}] "
            f"{interp} {event['id']}: {event['status']}{took}{reason}"
        )

    def skip(self, interp: str, count: int, reason: str) -> None:
        self.line(f"== {interp}: {count} cells skipped — {reason}")

    def status(self, text: str, remaining_seconds: float | None) -> None:
        """A line between cell completions (rounds are long): where the run is, time left."""
        left = "" if remaining_seconds is None else f", ~{fmt_duration(remaining_seconds)} left"
        self.line(
            f"[{self.done:>{len(str(self.total))}}/{self.total} "
            f"{fmt_duration(time.monotonic() - self.start)}{left}] {text}"
        )
