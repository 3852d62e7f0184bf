"""How the report writes numbers: times, ratios and their intervals (one place, for the page,
the verdict cards, summary.md and data.csv)."""

from __future__ import annotations

from gilmatrix.reports.stats import Comparison


def format_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def format_ratio(value: float) -> str:
    return f"{value:.2f}x"


TOO_FEW = "too few processes for an interval"


def format_interval(cmp: Comparison) -> str:
    if cmp.n_a < 2 or cmp.n_b < 2 or not cmp.ratio_low > 0:
        return TOO_FEW
    return f"95% interval {cmp.ratio_low:.2f}-{cmp.ratio_high:.2f}x"


def format_speedup_interval(cmp: Comparison) -> str:
    """The interval of a time ratio, turned into one of speedup (1 / ratio)."""
    if cmp.n_a < 2 or cmp.n_b < 2 or not cmp.ratio_low > 0:
        return TOO_FEW
    return f"95% interval {1 / cmp.ratio_high:.2f}-{1 / cmp.ratio_low:.2f}x"


__all__ = ["TOO_FEW", "format_interval", "format_ms", "format_ratio", "format_speedup_interval"]
