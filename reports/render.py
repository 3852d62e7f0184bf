"""Stage 4 of the report, I/O: build_report reads a run (reports.results), has it judged
(reports.analysis), builds the page (reports.page) and its payload, and writes the outputs:

out_dir/index.html   one self-contained page (one inline Vega bundle, every chart's spec)
out_dir/data.csv     one row per cell: statistics, speedup, efficiency, warnings
out_dir/values.csv   the tidy frame: one row per measured value
out_dir/summary.md   the verdicts in Markdown (GitHub job summaries)
out_dir/results/     copies of the pyperf suites and the manifest, for download
out_dir/charts/      each chart as SVG (and PNG), rendered by vl-convert
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import vl_convert

from gilmatrix.reports.analysis import analyse_run
from gilmatrix.reports.bundle import javascript_bundle, library_versions
from gilmatrix.reports.charts import ChartSet, build_charts
from gilmatrix.reports.compare import (
    order_cells,
    with_speedup,
)
from gilmatrix.reports.formatting import format_interval, format_ms
from gilmatrix.reports.page import TABLE_HEADER, build_page, change_rows
from gilmatrix.reports.payload import chart_payload, script_json
from gilmatrix.reports.results import (
    CELL_COLUMNS,
    RunResults,
    load_run,
)
from gilmatrix.reports.summary import render_summary

TEMPLATES = Path(__file__).parent / "templates"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every label from matrix.yaml or a result file is text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ms"] = format_ms
    env.filters["interval"] = format_interval
    return env


CSV_ORDER = (
    *CELL_COLUMNS,  # what a cell is, then its figures
    "n",
    "processes",
    "mean_s",
    "median_s",
    "stdev_s",
    "proc_sd_s",
    "min_s",
    "max_s",
    "ci_low_s",
    "ci_high_s",
    "precision",
    "speedup",
    "efficiency",
    "parallel_efficiency",
    "cpu_time_s",
    "parallelism",
    "class",
    "peak_rss_bytes",
    "warnings",
)


def cells_csv(cells: pd.DataFrame) -> pd.DataFrame:
    """data.csv: one row per cell. Figures a result does not hold (CPU time, parallelism,
    class, peak RSS of runs made before the harness recorded them) are left empty."""
    out = order_cells(with_speedup(cells)).drop(columns=["seq_mean", "series"], errors="ignore")
    out["warnings"] = out["warnings"].map("; ".join)
    out = out.rename(
        columns={
            c: f"{c}_s"
            for c in (
                "mean",
                "median",
                "stdev",
                "proc_sd",
                "min",
                "max",
                "ci_low",
                "ci_high",
                "cpu_time",
                "adj_mean",
                "adj_sd",
                "trim_mean",
                "trim_sd",
            )
        }
    )
    out = out.rename(columns={"cpu_class": "class", "peak_rss": "peak_rss_bytes"})
    out["peak_rss_bytes"] = out["peak_rss_bytes"].round().astype("Int64")
    return out[[c for c in CSV_ORDER if c in out.columns] + [c for c in out.columns if c not in CSV_ORDER]]


def baseline_summary(run_id: str, changes: pd.DataFrame, charts: ChartSet, how: str = "") -> dict[str, Any]:
    rows, total = change_rows(changes, previous="")
    counts = changes["change"].value_counts() if len(changes) else pd.Series(dtype=int)
    return {
        "run_id": run_id,
        "how": how,
        "compared": len(changes),
        "regressions": int(counts.get("regression", 0)),
        "improvements": int(counts.get("improvement", 0)),
        "unchanged": int(counts.get("no significant change", 0)),
        "rows": rows,
        "significant": total,
        "charts": [c for c in charts.charts if c.section == "baseline"],
        "changes": changes,
    }


def build_report(
    run_dir: Path,
    out_dir: Path,
    *,
    baseline: Path | Sequence[Path] | None = None,
    chart_images: bool = True,
) -> Path:
    """Write the report of run_dir into out_dir; return the path of index.html.

    Works on partial runs: cells without a result are listed with their reason. Raises
    UserError when run_dir (or baseline) is not a results directory of a known format.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    given = [] if baseline is None else [baseline] if isinstance(baseline, str | Path) else list(baseline)
    found = analyse_run(load_run(run_dir), [load_run(Path(b)) for b in given])
    results, cells = found.results, found.cells
    charts = build_charts(cells, found.versions, found.base_changes) if len(cells) else ChartSet(())
    base_info = None
    if found.base_runs:
        empty = pd.DataFrame(columns=["change", "significant", "ratio"])
        base_info = baseline_summary(
            ", ".join(b.run_id for b in found.base_runs),
            empty if found.base_changes is None else found.base_changes,
            charts,
            found.base_how,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    downloads = _write_data(results, cells, out_dir)
    if chart_images:
        downloads += _write_chart_images(charts, out_dir)
    page = build_page(
        results,
        cells,
        found.cards,
        charts,
        found.versions,
        base_info,
        downloads,
        library_versions(),
        found.replicates,
    )
    html = (
        environment()
        .get_template("report.html.j2")
        .render(
            page=page,
            header=TABLE_HEADER,
            payload=script_json(chart_payload(charts)),
            bundle=javascript_bundle(),
        )
    )
    index = out_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    (out_dir / "summary.md").write_text(render_summary(page, base_info), encoding="utf-8")
    return index


def _write_data(results: RunResults, cells: pd.DataFrame, out_dir: Path) -> list[tuple[str, str]]:
    downloads = [
        ("data.csv: one row per cell", "data.csv"),
        ("values.csv: one row per measured value", "values.csv"),
        ("summary.md", "summary.md"),
    ]
    if len(cells):
        cells_csv(cells).to_csv(out_dir / "data.csv", index=False)
    else:
        (out_dir / "data.csv").write_text("", encoding="utf-8")
    results.frame.to_csv(out_dir / "values.csv", index=False)
    target = out_dir / "results"
    target.mkdir(exist_ok=True)
    # copies, not links: the report folder is uploaded and moved around as one artifact
    for path in (*results.suites, results.run_dir / "manifest.json"):
        shutil.copyfile(path, target / path.name)
        downloads.append(
            (
                f"{path.name} (pyperf suite)" if path.name != "manifest.json" else "manifest.json",
                f"results/{path.name}",
            )
        )
    return downloads


def _write_chart_images(charts: ChartSet, out_dir: Path) -> list[tuple[str, str]]:
    target = out_dir / "charts"
    target.mkdir(exist_ok=True)
    records = {name: json.loads(frame.to_json(orient="records")) for name, frame in charts.datasets.items()}
    downloads = []
    for chart in charts.charts:
        spec = {**chart.spec, "datasets": {n: records[n] for n in chart.datasets}}
        # PNG from the SVG: one Vega render per chart instead of two
        svg = vl_convert.vegalite_to_svg(spec)
        (target / f"{chart.id}.svg").write_text(svg, encoding="utf-8")
        (target / f"{chart.id}.png").write_bytes(vl_convert.svg_to_png(svg, scale=2))
        downloads.append((f"chart {chart.id} (SVG)", f"charts/{chart.id}.svg"))
        downloads.append((f"chart {chart.id} (PNG)", f"charts/{chart.id}.png"))
    return downloads
