"""summary.md: the verdicts as Markdown, for a GitHub job summary or a pull-request comment."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from gilmatrix.reports.formatting import format_interval
from gilmatrix.reports.page import Page

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what can start markup mid-line


def md(text: object) -> str:
    """Escape a label for Markdown and for the HTML GitHub lets through Markdown."""
    escaped = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", escaped.replace("\n", " "))


def render_summary(page: Page, baseline: Mapping[str, Any] | None = None) -> str:
    lines = [f"# gilmatrix: run {md(page.run['id'])}", ""]
    lines.append(
        f"{md(page.run['state'])}, profile {md(page.run['profile'])}, "
        f"{len(page.interpreter_ids)} interpreters, {len(page.workloads)} workloads, "
        f"{len(page.problems)} cells without a result."
    )
    lines.append("")
    for warning in page.warnings:
        lines.append(f"> **Warning:** {md(warning)}")
        lines.append("")
    lines += _winners(page.interpreter_ids, page.overview)
    for section in page.workloads:
        lines += ["", f"## {md(section.name)} ({md(section.kind)})", ""]
        for card in section.cards:
            lines.append(
                f"- **{md(card.interpreter)}**: {md(card.headline)}" + _threads_note(card) + _cores_note(card)
            )
    if page.ft_rows:
        lines += [
            "",
            "## Free-threaded vs default build",
            "",
            "| builds | workload | single-thread overhead | 95% interval | threads' speedup | published |",
            "|---|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in page.ft_rows]
    lines += _replicates(page.replicates)
    if baseline:
        lines += [
            "",
            f"## Against baseline {md(baseline['run_id'])}",
            "",
            f"{baseline['compared']} cells compared: {baseline['regressions']} significant "
            f"regressions, {baseline['improvements']} significant improvements.",
        ]
        if baseline.get("how"):
            lines += ["", md(baseline["how"])]
        lines += [
            f"- {md(r[0])} `{r[2]}`: {md(r[3])} ({md(r[5])}, 95% interval {md(r[4])})"
            for r in baseline["rows"][:30]
        ]
    if page.problems:
        lines += ["", f"## Cells without a result ({len(page.problems)})", ""]
        for skipped in page.skipped_groups[:50]:
            lines.append(
                f"- skipped on {md(', '.join(skipped.interpreters))}, "
                f"{len(skipped.cells)} cell{'s' * (len(skipped.cells) != 1)}: "
                f"{md(skipped.reason)}"
            )
        for group in page.problem_groups[:50]:
            cells = group.cells[0] if len(group.cells) == 1 else f"{len(group.cells)} cells"
            lines.append(f"- {md(group.interpreter)} {md(cells)}: {md(group.status)}, {md(group.reason)}")
        if len(page.problem_groups) > 50:
            lines.append(f"- and {len(page.problem_groups) - 50} more (see index.html)")
    lines.append("")
    return "\n".join(lines)


def _replicates(section: Mapping[str, Any]) -> list[str]:
    """One line on the replicates, and the verdicts that differ between them (a table)."""
    if not section:
        return []
    lines = ["", f"**Replicates:** {md(section['summary'])}"]
    lines += [f"> **Warning:** {md(problem)}" for problem in section["problems"]]
    if section["differs"]:
        lines += [
            "",
            "| " + " | ".join(md(h) for h in section["header"]) + " |",
            "|" + "---|" * len(section["header"]),
        ]
        lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in section["differs"][:30]]
        if section["differs_total"] > 30:
            lines.append(f"\nand {section['differs_total'] - 30} more (see index.html)")
    return lines


def _winners(interps: Sequence[str], overview: Sequence[tuple[str, Sequence[Any]]]) -> list[str]:
    lines = [
        "## Winners",
        "",
        "| workload | " + " | ".join(md(i) for i in interps) + " |",
        "|---|" + "---|" * len(interps),
    ]
    for workload, cards in overview:
        cells = [md(c.headline) if c else "no result" for c in cards]
        lines.append(f"| {md(workload)} | " + " | ".join(cells) + " |")
    return lines


def _threads_note(card: Any) -> str:
    if card.threads_vs_sequential is None:
        return ""
    workers, cmp = card.threads_vs_sequential
    verdict = "tie" if cmp.direction == "tie" else cmp.direction
    return (
        f"; threads @ {workers}: {cmp.ratio:.2f}x the sequential time ({verdict}, {md(format_interval(cmp))})"
    )


def _cores_note(card: Any) -> str:
    """The winner's effective parallelism and class, when the harness measured them."""
    w = card.winner
    if w.parallelism is None:
        return ""
    return f"; {w.parallelism:.2f} cores busy ({md(w.cpu_class)})"
