"""Regex scan: find the e-mail addresses, dates and amounts in a block of log text, per task.

Log processing and input validation. The ``re`` engine holds the GIL while it matches.
"""

from __future__ import annotations

import re

from textgen import log_text  # a local helper module beside this file

KIND = "cpu"
PARAMS = {
    "tasks": {"default": 8, "min": 1, "max": 4096, "doc": "text blocks per timed call"},
    "lines": {"default": 400, "min": 1, "max": 1_000_000, "doc": "log lines per block"},
}

_PATTERNS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b"),
    "date": re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
    "amount": re.compile(r"\$\d+\.\d{2}\b"),
}


def make_tasks(params: dict) -> list:
    return [log_text(seed, params["lines"]) for seed in range(params["tasks"])]


def run_task(text: str) -> tuple:
    return tuple(len(pattern.findall(text)) for pattern in _PATTERNS.values())


def check(params: dict, tasks: list, results: list) -> None:
    # every generated line has one address, one date and one amount
    expected = [(params["lines"],) * 3] * len(tasks)
    if results != expected:
        raise AssertionError(f"regex_scan: got {results[:2]}..., expected {expected[:2]}...")
