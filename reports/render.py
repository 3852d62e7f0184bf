"""build_report: the I/O edge of the reports package. Reads a run, writes the outputs:

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
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import vl_convert

from gilmatrix.errors import UserError
from gilmatrix.reports.charts import ChartSet, build_charts
from gilmatrix.reports.compare import (
    FTSCALING,
    baseline_changes,
    order_cells,
    replicated_changes,
    version_changes,
    with_speedup,
)
from gilmatrix.reports.page import TABLE_HEADER, build_page, change_rows
from gilmatrix.reports.payload import chart_payload, script_json
from gilmatrix.reports.replicates import (
    Replicate,
    ReplicateAnalysis,
    ReplicateCells,
    analyse,
    movement,
)
from gilmatrix.reports.results import (
    CELL_COLUMNS,
    RunResults,
    baseline_drift,
    baseline_floor,
    load_run,
    noise_floor,
    replicate_runs,
    scaling_workloads,
)
from gilmatrix.reports.stats import cell_table, pool_baselines
from gilmatrix.reports.summary import render_summary
from gilmatrix.reports.verdicts import decide, format_interval, format_ms

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one script; built once per process (about a second).
    '</script' cannot occur in a script element, so it is escaped if it ever appears."""
    bundle: str = vl_convert.javascript_bundle()  # type: ignore[call-arg]  # the stub lacks the default
    return bundle.replace("</script", "<\\/script")


def library_versions() -> dict[str, str]:
    return {
        "vega": vl_convert.get_vega_version(),
        "vegalite": vl_convert.get_vegalite_versions()[-1],
        "embed": vl_convert.get_vega_embed_version(),
    }


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


ADVISED_BASELINES = 4  # measured: 2% of unchanged cells called changes with 4, 6% with 2


def run_to_run_summary(pooled: pd.DataFrame) -> str:
    """The run-to-run component the baseline runs showed, in words: its median and largest sd
    over the groups of cells (the largest named), and where there was none."""
    m = movement(pooled)
    if m is None:
        return "no cell was in every baseline run"
    workload, executor, interp = m.worst
    return (
        f"{m.moved} of {m.groups} groups moved, median ±{m.median:.1%}, most "
        f"{workload} under {executor} on {interp} ±{m.largest:.1%}"
    )


def compare_with_baselines(
    results: Any, cells: pd.DataFrame, base_runs: Sequence[Any]
) -> tuple[pd.DataFrame, str]:
    """This run's cells against one baseline run, or against two or more (replicates of one
    baseline) pooled, whose differences measure the machine's run-to-run component; and a
    sentence saying which, for the report."""
    floor = max(baseline_floor(results.manifest, b.manifest) for b in base_runs)
    if len(base_runs) == 1:
        (base,) = base_runs
        changes = baseline_changes(
            cells, cell_table(base.frame), floor, baseline_drift(results.manifest, base.manifest)
        )
        how = (
            "One baseline run: how far this machine moves a cell's mean from one run to the next "
            "is not known, and no single run can measure it (on a shared or virtual machine it "
            "can exceed a cell's interval). Changes are called against the intervals, each "
            f"cell's drift within its runs and a floor of {floor:.1%}; give the baseline "
            "twice (--baseline A --baseline A2, the same cells run again unchanged) and the "
            "report measures that run-to-run component and widens every test by it."
        )
        return changes, how
    pooled = pool_baselines([cell_table(b.frame) for b in base_runs])
    changes = replicated_changes(cells, pooled, floor)
    how = (
        f"{len(base_runs)} baseline runs, pooled: their cells' differences measured this "
        f"machine's run-to-run component (sd of a cell's mean between runs, beyond its "
        f"interval), per workload, execution model and interpreter, in two parts: a shift "
        f"the cells of a group share in a run, and each cell's own; {run_to_run_summary(pooled)}. "
        f"Every test adds it, for this run and for the baseline's mean, and a change must exceed "
        f"the floor of {floor:.1%}."
    )
    if len(base_runs) < ADVISED_BASELINES:
        how += (
            f" A shift common to a group is one draw per run, so {len(base_runs)} runs measure it "
            f"with {len(base_runs) - 1} degree{'s' if len(base_runs) > 2 else ''} of freedom: "
            f"when they happen to agree, several cells of a group can be called changed together; "
            f"{ADVISED_BASELINES} or more baseline runs make that rare."
        )
    return changes, how


def replicate_analysis(results: RunResults, cells: pd.DataFrame) -> ReplicateAnalysis | None:
    """The run's replicates (a merged CI run's ``replicates/<r>/``), each loaded and read, and
    every verdict made on each (reports/replicates.py); None for a run that names none. A
    replicate folder that cannot be read is a problem the page lists, not a failed report."""
    info = replicate_runs(results)
    if info is None:
        return None
    one = ReplicateCells(1, results.run_id, cells, noise_floor(results.manifest))
    if info.count < 2:
        machines = tuple(sorted({str(m) for m in cells["machine"]} - {""})) if "machine" in cells else ()
        only = (Replicate(1, results.run_id, machines),)
        return ReplicateAnalysis(info.count, only, (), None, info.problems)
    replicates, problems = [one], list(info.problems)
    for number, path in info.runs:
        try:
            run = load_run(path)
        except UserError as exc:
            problems.append(f"replicate {number}: {exc}")
            continue
        table = cell_table(run.frame)
        if table.empty:
            problems.append(f"replicate {number}: no cell has a result")
            continue
        replicates.append(ReplicateCells(number, run.run_id, table, noise_floor(run.manifest)))
    return analyse(
        replicates,
        info.count,
        scaling_workloads=scaling_workloads(results.facts, FTSCALING),
        problems=problems,
    )


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
    results = load_run(run_dir)
    cells = cell_table(results.frame)
    if cells.empty:
        cells = cells.astype({"workers": "int64", "n": "int64", "tasks": "int64", "processes": "int64"})
    floor = noise_floor(results.manifest)
    cards = decide(cells, _descriptions(results.manifest), floor) if len(cells) else []
    versions = version_changes(cells, floor) if len(cells) else None
    given = [] if baseline is None else [baseline] if isinstance(baseline, str | Path) else list(baseline)
    base_runs = [load_run(Path(b)) for b in given]
    base_changes, how = None, ""
    if base_runs and len(cells):
        base_changes, how = compare_with_baselines(results, cells, base_runs)
    charts = build_charts(cells, versions, base_changes) if len(cells) else ChartSet(())
    base_info = None
    if base_runs:
        empty = pd.DataFrame(columns=["change", "significant", "ratio"])
        base_info = baseline_summary(
            ", ".join(b.run_id for b in base_runs),
            empty if base_changes is None else base_changes,
            charts,
            how,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    downloads = _write_data(results, cells, out_dir)
    if chart_images:
        downloads += _write_chart_images(charts, out_dir)
    replicates = replicate_analysis(results, cells) if len(cells) else None
    page = build_page(
        results, cells, cards, charts, versions, base_info, downloads, library_versions(), replicates
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


def _descriptions(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Workload descriptions, if the runner recorded them (manifest 'workloads' entry)."""
    workloads = manifest.get("workloads") or {}
    if not isinstance(workloads, Mapping):
        return {}
    return {
        str(k): str(v.get("description"))
        for k, v in workloads.items()
        if isinstance(v, Mapping) and v.get("description")
    }


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
