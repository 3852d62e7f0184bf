"""Altair charts of the report, as Vega-Lite spec dicts that refer to named datasets.

Charts never inline their data: every spec names a dataset ("cells", "heat", ...) and the page
holds each dataset once, handing it to every chart that uses it. Ten thousand cells then cost
one copy of the data, not one per chart. Each chart also declares the variable parameters
``show_interpreters`` and ``show_executors`` that the page's controls set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from gilmatrix.harness.contract import executor_rank, interpreter_key
from gilmatrix.reports.compare import (
    PEP779_MEMORY,
    PEP779_TIME,
    PUBLISHED_BENCH_RUNNER,
    free_threading,
    heatmap_table,
    with_speedup,
)

FACET_COLUMNS = 5
TIME_TITLE = "mean time per call (ms)"
# One colour per executor name, the same in every report whichever executors a run has;
# the process-pool variants share processes' green family.
EXECUTOR_COLORS = {
    "sequential": "#4c78a8",
    "threads": "#f58518",
    "processes": "#54a24b",
    "processes-fork": "#88c77f",
    "processes-forkserver": "#2f6b2a",
    "processes-spawn": "#b5bd3a",
    "interpreters": "#b279a2",
    "asyncio": "#e45756",
}
PALETTE = ["#72b7b2", "#9d755d", "#ff9da6", "#bab0ac", "#eeca3b"]  # other executor names


# Altair's chart classes compose into each other (encode, layer, facet, transform_filter):
# what a helper is handed or returns is any of them, as Altair's own signatures say.
Chart = Any


def executor_colors(executors: Sequence[str]) -> list[str]:
    extra = iter(PALETTE * (1 + len(executors) // len(PALETTE)))
    return [EXECUTOR_COLORS.get(name) or next(extra) for name in executors]


@dataclass(frozen=True, slots=True)
class ChartSpec:
    id: str  # also the file stem of its SVG/PNG export
    title: str
    section: str  # "workload" | "versions" | "baseline"
    spec: Mapping[str, Any]
    datasets: tuple[str, ...]
    workload: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class ChartSet:
    charts: tuple[ChartSpec, ...]
    datasets: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    interpreters: tuple[str, ...] = ()
    executors: tuple[str, ...] = ()


def _round(frame: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Four significant digits are more than the noise allows and keep the page small."""
    out = frame.copy()
    for column in out.select_dtypes("float").columns:
        out[column] = round_significant(out[column].to_numpy(), digits)
    return out


# Labels from a result file are text to show, and two kinds of character in them break charts:
# - U+2028 and U+2029: Vega-Lite turns data values into Vega expressions (a custom sort order,
#   a field predicate) with JSON.stringify, which leaves them raw, and vega-expression refuses
#   them inside a string ("Unexpected token ILLEGAL": the chart fails, vl-convert raises);
# - C0 controls other than tab, newline and carriage return: Vega writes text into SVG as it is,
#   XML forbids them, and vl-convert's SVG parser aborts the whole process on one.
# In the charts the first are spaces and the second U+FFFD, the same in data and specs (and in
# report.js, which hands the page's filter values to the charts).
_CHART_MAP: dict[str | int, str] = {"\u2028": " ", "\u2029": " "}
_CHART_MAP.update({c: "\ufffd" for c in range(32) if chr(c) not in "\t\n\r"})
_CHART_TEXT = str.maketrans(_CHART_MAP)
_CHART_UNSAFE = "[\u2028\u2029\x00-\x08\x0b\x0c\x0e-\x1f]"


def vega_text(value: Any) -> Any:
    """A label as the charts show it (see _CHART_TEXT); other values unchanged."""
    return value.translate(_CHART_TEXT) if isinstance(value, str) else value


def _vega_values(spec: Any) -> Any:
    if isinstance(spec, dict):
        return {vega_text(k): _vega_values(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_vega_values(v) for v in spec]
    return vega_text(spec)


def _vega_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A dataset whose text columns are as the charts show them (vega_text)."""
    columns = [
        c
        for c in frame.select_dtypes(exclude=["number", "bool"]).columns
        if frame[c].astype(str).str.contains(_CHART_UNSAFE).any()
    ]
    if not columns:
        return frame
    out = frame.copy()
    for column in columns:
        out[column] = out[column].map(vega_text)
    return out


def _interval_bars(base: Chart) -> Chart:
    """The 95% interval of each cell's mean; cells without one (a single worker process) draw
    no bar rather than a zero-width one that would look precise."""
    return (
        base.transform_filter("isValid(datum.lo_ms) && isValid(datum.hi_ms)")
        .mark_errorbar()
        .encode(y=alt.Y("lo_ms:Q", title=TIME_TITLE), y2="hi_ms:Q")
    )


def round_significant(values: np.ndarray, digits: int = 4) -> np.ndarray:
    """Vectorised float(f"{v:.4g}"): scale by an exact power of ten, round, scale back. Dividing
    by 10**k (exact) gives the double nearest the decimal, so JSON prints it short."""
    with np.errstate(divide="ignore", invalid="ignore"):
        finite = np.isfinite(values) & (values != 0)
        exponent = np.zeros(len(values), dtype=np.int64)
        exponent[finite] = np.floor(np.log10(np.abs(values[finite]))).astype(np.int64)
        shift = digits - 1 - exponent  # round(v * 10**shift) / 10**shift
        up = np.power(10.0, np.clip(shift, 0, 300))
        down = np.power(10.0, np.clip(-shift, 0, 300))
        out = np.where(shift >= 0, np.round(values * up) / up, np.round(values / down) * down)
    return np.where(finite, out, values)


def cells_dataset(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per cell for the charts, plus sequential drawn as a flat reference at every
    worker count of its workload (sequential ignores workers; it is planned at 1 only)."""
    speed = with_speedup(cells)
    classes = speed["cpu_class"]
    data = pd.DataFrame(
        {
            "interpreter": speed["interpreter"],
            "workload": speed["workload"],
            "executor": speed["executor"],
            "workers": speed["workers"],
            "mean_ms": speed["mean"] * 1e3,
            "lo_ms": speed["ci_low"] * 1e3,
            "hi_ms": speed["ci_high"] * 1e3,
            "median_ms": speed["median"] * 1e3,
            "stdev_ms": speed["stdev"] * 1e3,
            "n": speed["n"],
            "speedup": speed["speedup"],
            "parallelism": speed["parallelism"],
            "class": classes.where(classes != ""),
            "rss_mb": speed["peak_rss"] / 1e6,
        }
    )
    counts = data.groupby("workload")["workers"].unique()
    seq = data[data["executor"] == "sequential"]
    refs = [
        seq[seq["workload"] == workload].assign(workers=int(count))
        for workload, values in counts.items()
        for count in values
        if count != 1
    ]
    return _round(pd.concat([data, *refs], ignore_index=True)) if refs else _round(data)


def _color(executors: Sequence[str]) -> alt.Color:
    return alt.Color(
        "executor:N",
        title="executor",
        scale=alt.Scale(domain=list(executors), range=executor_colors(executors)),
        legend=alt.Legend(orient="top"),
    )


def _per_interpreter(layer: Chart, interps: Sequence[str], execs: Sequence[str], workload: str) -> Chart:
    """A workload's layered chart with the page's filters, one panel per interpreter."""
    return _filters(layer, interps, execs, workload).facet(
        facet=alt.Facet("interpreter:N", sort=list(interps), title=None), columns=FACET_COLUMNS
    )


def _filters(
    chart: Chart,
    interpreters: Sequence[str],
    executors: Sequence[str],
    workload: str | None,
    by_executor: bool = True,
) -> Chart:
    chart = chart.add_params(
        alt.param(name="show_interpreters", value=list(interpreters)),
        alt.param(name="show_executors", value=list(executors)),
    )
    test = "indexof(show_interpreters, datum.interpreter) >= 0"
    if by_executor:
        test += " && indexof(show_executors, datum.executor) >= 0"
    if workload is not None:
        # a field predicate, not an expression: the name stays a JSON string (see _for_workload)
        chart = chart.transform_filter(alt.FieldEqualPredicate(field="workload", equal=workload))
    return chart.transform_filter(test)


def _tooltip() -> list[alt.Tooltip]:
    return [
        alt.Tooltip("interpreter:N"),
        alt.Tooltip("executor:N"),
        alt.Tooltip("workers:Q"),
        alt.Tooltip("mean_ms:Q", title="mean (ms)", format=".4g"),
        alt.Tooltip("median_ms:Q", title="median (ms)", format=".4g"),
        alt.Tooltip("stdev_ms:Q", title="stdev (ms)", format=".3g"),
        alt.Tooltip("n:Q"),
        alt.Tooltip("speedup:Q", format=".2f"),
        alt.Tooltip("parallelism:Q", title="cores busy (CPU/wall)", format=".2f"),
        alt.Tooltip("class:N"),
        alt.Tooltip("rss_mb:Q", title="peak RSS (MB)", format=".1f"),
    ]


def time_vs_workers(
    workload: str, interps: Sequence[str], execs: Sequence[str], intervals: bool = True
) -> Chart:
    base = alt.Chart(alt.NamedData(name="cells")).encode(
        x=alt.X("workers:O", title="workers", axis=alt.Axis(labelAngle=0)), color=_color(execs)
    )
    line = base.mark_line(point=True).encode(
        y=alt.Y("mean_ms:Q", title=TIME_TITLE, scale=alt.Scale(zero=True)),
        # sequential ignores workers: one dashed flat line through its rows
        strokeDash=alt.condition("datum.executor == 'sequential'", alt.value([4, 3]), alt.value([1, 0])),
        tooltip=_tooltip(),
    )
    layers = [_interval_bars(base), line] if intervals else [line]
    layer = alt.layer(*layers).properties(width=160, height=130)
    return _per_interpreter(layer, interps, execs, workload)


def speedup_vs_workers(workload: str, interps: Sequence[str], execs: Sequence[str]) -> Chart:
    base = alt.Chart(alt.NamedData(name="cells")).encode(x=alt.X("workers:Q", title="workers"))
    ideal = base.mark_line(color="#bbb", strokeDash=[2, 2]).encode(y="workers:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("speedup:Q", title="speedup over sequential"), color=_color(execs), tooltip=_tooltip()
    )
    layer = alt.layer(ideal, line).properties(width=160, height=130)
    return _per_interpreter(layer, interps, execs, workload)


def parallelism_vs_workers(workload: str, interps: Sequence[str], execs: Sequence[str]) -> Chart:
    """Effective parallelism (CPU / wall) per executor; the rule at 1 is one busy core."""
    base = alt.Chart(alt.NamedData(name="cells"))
    one = base.mark_rule(color="#888", strokeDash=[3, 3]).encode(y=alt.datum(1))
    # "unknown": the harness could not measure it, or the call was too short to trust it
    line = (
        base.transform_filter("isValid(datum.parallelism) && datum['class'] != 'unknown'")
        .mark_line(point=True)
        .encode(
            x=alt.X("workers:Q", title="workers", scale=alt.Scale(zero=False)),
            y=alt.Y("parallelism:Q", title="cores busy (CPU / wall)"),
            color=_color(execs),
            strokeDash=alt.condition("datum.executor == 'sequential'", alt.value([4, 3]), alt.value([1, 0])),
            tooltip=_tooltip(),
        )
    )
    layer = alt.layer(one, line).properties(width=160, height=130)
    return _per_interpreter(layer, interps, execs, workload)


def memory_vs_workers(workload: str, interps: Sequence[str], execs: Sequence[str]) -> Chart:
    """Peak RSS of the benchmark process plus its pool's processes."""
    base = alt.Chart(alt.NamedData(name="cells")).transform_filter(
        "isValid(datum.rss_mb) && datum.executor != 'sequential'"
    )
    line = base.mark_line(point=True).encode(
        x=alt.X("workers:Q", title="workers"),
        y=alt.Y("rss_mb:Q", title="peak RSS (MB)", scale=alt.Scale(zero=True)),
        color=_color(execs),
        tooltip=_tooltip(),
    )
    return _filters(line.properties(width=160, height=130), interps, execs, workload).facet(
        facet=alt.Facet("interpreter:N", sort=list(interps), title=None), columns=FACET_COLUMNS
    )


def across_versions(
    workload: str,
    interps: Sequence[str],
    execs: Sequence[str],
    workers: Sequence[int],
    intervals: bool = True,
) -> Chart:
    """The same cell on every interpreter; the worker count is picked with a drop-down."""
    pick = alt.param(
        name="workers_pick",
        value=max(workers),
        bind=alt.binding_select(options=list(workers), name="workers "),
    )
    base = alt.Chart(alt.NamedData(name="cells")).encode(
        x=alt.X("interpreter:N", sort=list(interps), title=None, axis=alt.Axis(labelAngle=0)),
        color=_color(execs),
        xOffset=alt.XOffset("executor:N", sort=list(execs)),
    )
    points = base.mark_point(filled=True, size=50).encode(
        y=alt.Y("mean_ms:Q", title=TIME_TITLE), tooltip=_tooltip()
    )
    layers = [_interval_bars(base), points] if intervals else [points]
    chart = alt.layer(*layers).properties(width=max(300, 60 * len(interps)), height=220)
    chart = _filters(chart, interps, execs, workload).add_params(pick)
    return chart.transform_filter("datum.workers == workers_pick")


def speedup_heatmap(interps: Sequence[str], execs: Sequence[str]) -> Chart:
    base = alt.Chart(alt.NamedData(name="heat")).encode(
        x=alt.X("interpreter:N", sort=list(interps), title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("executor:N", sort=list(execs), title=None),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(
            "speedup:Q", title="speedup", scale=alt.Scale(type="log", scheme="redblue", domainMid=1)
        ),
        tooltip=[
            alt.Tooltip("interpreter:N"),
            alt.Tooltip("executor:N"),
            alt.Tooltip("workers:Q"),
            alt.Tooltip("speedup:Q", format=".2f"),
        ],
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("speedup:Q", format=".1f"),
        color=alt.condition(
            "datum.speedup > 2.5 || datum.speedup < 0.5", alt.value("white"), alt.value("black")
        ),
    )
    layer = alt.layer(rect, text).properties(width=max(200, 40 * len(interps)), height=22 * len(execs))
    return _filters(layer, interps, execs, None).facet(facet=alt.Facet("workload:N", title=None), columns=2)


def ft_overhead(
    execs: Sequence[str], interps: Sequence[str], field: str = "overhead", rows: int = 6
) -> Chart:
    """The free-threaded build's overhead per workload (``overhead``: single-thread time,
    ``memory``: peak RSS of the sequential cell), with PEP 779's phase II limit as a red tick and
    bench_runner's published figure as a dashed one; for time, the HOWTO's published range too."""
    base = alt.Chart(alt.NamedData(name="ft")).encode(y=alt.Y("workload:N", title=None))
    what = "single-thread time" if field == "overhead" else "peak memory"
    title = f"{what} (free-threaded / default - 1)"
    limit = PEP779_TIME if field == "overhead" else PEP779_MEMORY
    published_value = PUBLISHED_BENCH_RUNNER["time" if field == "overhead" else "memory"]
    layers = []
    if field == "overhead":
        published = base.mark_rect(color="#ddd").encode(
            x=alt.X("published_low:Q", title=title), x2="published_high:Q"
        )
        tick = base.mark_tick(color="#888", thickness=2).encode(x=alt.X("published_low:Q", title=title))
        layers += [published, tick]
    significance = alt.Color(
        "significant:N",
        title="significant",
        scale=alt.Scale(domain=[True, False], range=["#4c78a8", "#aab"]),
    )
    bars = base.mark_bar(height=10).encode(
        x=alt.X(f"{field}:Q", title=title, axis=alt.Axis(format="%")),
        # memory: one figure per cell (its peak), no test of it: one colour
        color=significance if field == "overhead" else alt.value("#4c78a8"),
        tooltip=[
            alt.Tooltip("free_threaded:N"),
            alt.Tooltip("workload:N"),
            alt.Tooltip(f"{field}:Q", format=".1%"),
            *(
                [alt.Tooltip("overhead_low:Q", format=".1%"), alt.Tooltip("overhead_high:Q", format=".1%")]
                if field == "overhead"
                else []
            ),
            alt.Tooltip("published:N"),
        ],
    )
    layers.append(bars)
    if field == "overhead":
        layers.append(
            base.mark_errorbar().encode(x=alt.X("overhead_low:Q", title=title), x2="overhead_high:Q")
        )
    # on every workload's row: PEP 779's limit (red) and bench_runner's published figure (dashed)
    pep = base.mark_tick(color="#cf222e", thickness=2).encode(x=alt.datum(limit))
    bench = base.mark_tick(color="#555", thickness=1, strokeDash=[3, 2]).encode(x=alt.datum(published_value))
    layer = alt.layer(*layers, pep, bench).properties(width=260, height=max(90, 14 * rows))
    return layer.facet(facet=alt.Facet("version:N", title=None), columns=3)


def ft_scaling() -> Chart:
    base = alt.Chart(alt.NamedData(name="ft")).transform_fold(
        ["threads_speedup_default", "threads_speedup_ft"], as_=["build", "speedup"]
    )
    bars = base.mark_bar().encode(
        y=alt.Y("workload:N", title=None),
        yOffset="build:N",
        x=alt.X("speedup:Q", title="threads' speedup over sequential at most workers"),
        color=alt.Color(
            "build:N",
            title="build",
            scale=alt.Scale(
                domain=["threads_speedup_default", "threads_speedup_ft"], range=["#9d755d", "#54a24b"]
            ),
            legend=alt.Legend(
                labelExpr=("datum.label == 'threads_speedup_ft' ? 'free-threaded' : 'default (GIL)'")
            ),
        ),
        tooltip=[alt.Tooltip("version:N"), alt.Tooltip("workload:N"), alt.Tooltip("speedup:Q", format=".2f")],
    )
    return bars.properties(width=260, height=90).facet(facet=alt.Facet("version:N", title=None), columns=3)


def change_chart(
    name: str, y_field: str, y_title: str, interps: Sequence[str], execs: Sequence[str]
) -> Chart:
    """Ratio new/old per cell with its interval; filled when the change is significant."""
    base = alt.Chart(alt.NamedData(name=name)).transform_calculate(
        cell="datum.workload + '/' + datum.executor + '/' + datum.workers",
        change="datum.significant ? (datum.ratio < 1 ? 'improvement' : 'regression')"
        " : 'no significant change'",
    )
    x_title = f"time ratio, this / {'baseline' if name == 'baseline' else 'previous'} (below 1 = faster)"
    rule = base.mark_rule(color="#888", strokeDash=[3, 3]).encode(x=alt.datum(1))
    fill = alt.Fill(
        "executor:N",
        scale=alt.Scale(domain=list(execs), range=executor_colors(execs)),
        legend=alt.Legend(orient="top"),
    )  # merges with the color legend
    points = base.mark_point(size=40).encode(
        y=alt.Y(f"{y_field}:N", sort=list(interps), title=y_title),
        x=alt.X(
            "ratio:Q",
            title=x_title,
            scale=alt.Scale(type="log", nice=False, padding=12),
            axis=alt.Axis(format=".2~f", tickCount=6),
        ),
        color=_color(execs),
        fill=alt.condition("datum.significant", fill, alt.value("transparent")),
        tooltip=[
            "cell:N",
            y_field + ":N",
            alt.Tooltip("ratio:Q", format=".3f"),
            alt.Tooltip("ratio_low:Q", format=".3f"),
            alt.Tooltip("ratio_high:Q", format=".3f"),
            "change:N",
        ],
    )
    layer = alt.layer(rule, points).properties(width=300, height=alt.Step(16))
    return _filters(layer, interps, execs, None).facet(facet=alt.Facet("workload:N", title=None), columns=2)


PLACEHOLDER = "@@gilmatrix-workload@@"


def _for_workload(template: str, workload: str) -> dict[str, Any]:
    placeholder = json.dumps(PLACEHOLDER)
    if placeholder not in template:
        raise AssertionError("chart template lost its workload placeholder")
    spec: dict[str, Any] = json.loads(template.replace(placeholder, json.dumps(vega_text(workload))))
    return spec


def _spec(chart: alt.TopLevelMixin, validate: bool) -> dict[str, Any]:
    spec = chart.to_dict(validate=validate)
    spec.pop("datasets", None)
    shown: dict[str, Any] = _vega_values(spec)
    return shown


def build_charts(
    cells: pd.DataFrame,
    versions: pd.DataFrame | None = None,
    baseline: pd.DataFrame | None = None,
    validate: bool = False,
) -> ChartSet:
    """All charts of the page, in page order, with the datasets they name."""
    interps = tuple(sorted(cells["interpreter"].unique(), key=interpreter_key))
    execs = tuple(sorted(cells["executor"].unique(), key=executor_rank))
    datasets: dict[str, pd.DataFrame] = {"cells": cells_dataset(cells)}
    charts = []
    # Building an Altair chart costs ~20 ms (deep copies, validation); with 25 workloads x 3
    # charts that dominated the report's build. So each per-workload chart is built once for a
    # placeholder workload and the placeholder is replaced in its JSON.
    # a run of single-process cells has no intervals: no error bars (Vega warns on empty ones)
    intervals = bool((cells["processes"] > 1).any()) if "processes" in cells else True
    templates = {
        "time": json.dumps(_spec(time_vs_workers(PLACEHOLDER, interps, execs, intervals), validate)),
        "speedup": json.dumps(_spec(speedup_vs_workers(PLACEHOLDER, interps, execs), validate)),
        "versions": json.dumps(_spec(across_versions(PLACEHOLDER, interps, execs, [1], intervals), validate)),
        "parallelism": json.dumps(_spec(parallelism_vs_workers(PLACEHOLDER, interps, execs), validate)),
        "memory": json.dumps(_spec(memory_vs_workers(PLACEHOLDER, interps, execs), validate)),
    }
    fixed_cost = set(cells.loc[(cells["pool_in_timing"] == "yes") | (cells["kind"] == "startup"), "workload"])
    measured = cells.groupby("workload", sort=False)[["parallelism", "peak_rss"]].count()
    pooled = cells[cells["executor"] != "sequential"].groupby("workload")["peak_rss"].count()
    for index, workload in enumerate(dict.fromkeys(cells["workload"])):
        counts = cells.loc[cells["workload"] == workload, "workers"].unique()
        workers = sorted(int(w) for w in counts)
        slug = workload_slug(index, workload)
        versions_spec = _for_workload(templates["versions"], workload)
        for param in versions_spec.get("params", []):
            if param["name"] == "workers_pick":
                param["value"] = max(workers)
                param["bind"]["options"] = workers
        # (chart, what it shows, whether this workload has it, its note), in page order
        kinds = (
            (
                "time",
                "time vs workers",
                True,
                "Mean per call with its 95% interval; sequential (dashed) runs "
                "at one worker and is drawn across for reference.",
            ),
            (  # a pool's start-up has no speedup over no pool
                "speedup",
                "speedup vs workers",
                workload not in fixed_cost,
                "Speedup over sequential; the dotted line is ideal scaling.",
            ),
            (
                "parallelism",
                "effective parallelism vs workers",
                bool(measured.loc[workload, "parallelism"]),
                "CPU time / wall time, median over runs: about 1 when one core "
                "works at a time (the GIL), N when N do, well below 1 while waiting; the dotted "
                "line is one core. A busy machine lowers it.",
            ),
            (
                "memory",
                "peak memory vs workers",
                bool(pooled.get(workload, 0)),
                "Peak RSS of the benchmark process plus, for process pools, its workers' "
                "peaks; missing where the run did not record the workers' memory.",
            ),
            ("versions", "the same cell across interpreters", True, "Pick the worker count below the chart."),
        )
        for kind, what, wanted, note in kinds:
            if wanted:
                spec = versions_spec if kind == "versions" else _for_workload(templates[kind], workload)
                title = f"{workload}: {what}"
                chart_id = f"{kind}-{slug}"
                charts.append(ChartSpec(chart_id, title, "workload", spec, ("cells",), workload, note))
    heat = heatmap_table(cells)
    ft = _compared(free_threading(cells))
    if len(heat):
        datasets["heat"] = _round(heat[["workload", "interpreter", "executor", "workers", "speedup"]])
    if len(ft):
        datasets["ft"] = _round(ft)
    versions_charts: tuple[tuple[bool, str, str, Callable[[], Any], str, str], ...] = (
        (
            len(heat) > 0,
            "heatmap",
            "Speedup at the largest worker count",
            lambda: speedup_heatmap(interps, execs),
            "heat",
            "Speedup over sequential of each executor at its largest worker count; above 1 (blue) is faster.",
        ),
        (
            len(ft) > 0,
            "ft-overhead",
            "Free-threaded build: single-thread overhead",
            lambda: ft_overhead(execs, interps, rows=ft["workload"].nunique()),
            "ft",
            "Sequential cell, free-threaded vs default build of the same version; grey: the "
            "HOWTO's published pyperformance overhead; red: PEP 779's 15% limit; dashed: "
            "bench_runner's published +9% (3.15.0a1+).",
        ),
        (
            len(ft) > 0 and bool(ft["memory"].notna().any()),
            "ft-memory",
            "Free-threaded build: memory overhead",
            lambda: ft_overhead(execs, interps, "memory", rows=ft["workload"].nunique()),
            "ft",
            "Peak RSS of the sequential cell's process, free-threaded vs default build; red: "
            "PEP 779's 20% limit; dashed: bench_runner's published +21% (3.15.0a1+).",
        ),
        (len(ft) > 0, "ft-scaling", "Free-threaded build: threads' scaling", ft_scaling, "ft", ""),
    )
    for wanted, chart_id, title, make, data, note in versions_charts:
        if wanted:
            charts.append(ChartSpec(chart_id, title, "versions", _spec(make(), validate), (data,), note=note))
    for name, frame, y_field, title, section in (
        ("changes", versions, "interpreter", "Version over version", "versions"),
        ("baseline", baseline, "interpreter", "Against the baseline run", "baseline"),
    ):
        frame = None if frame is None else _compared(frame)
        if frame is None or frame.empty:
            continue
        # no "cell" or "change" columns: the chart derives them, 8,000 rows would repeat them
        datasets[name] = _round(
            frame[
                [
                    c
                    for c in (
                        "interpreter",
                        "previous",
                        "workload",
                        "executor",
                        "workers",
                        "ratio",
                        "ratio_low",
                        "ratio_high",
                        "significant",
                    )
                    if c in frame.columns
                ]
            ]
        )
        charts.append(
            ChartSpec(
                name,
                title,
                section,
                _spec(change_chart(name, y_field, "interpreter", interps, execs), validate),
                (name,),
                note="Each cell's time ratio; filled points are significant (Welch, 95%).",
            )
        )
    datasets = {name: _vega_frame(frame) for name, frame in datasets.items()}
    return ChartSet(tuple(charts), datasets, interps, execs)


def _compared(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that are verdicts: a pair of cells of different machines is not drawn, as a
    point or bar would read as a change or a tie (compare.across_machines)."""
    if "compared" not in frame.columns or frame.empty:
        return frame
    return frame[frame["compared"].astype(bool)]


def workload_slug(index: int, name: str) -> str:
    """An id-safe name; the index keeps '<b>' and 'b' apart."""
    text = "".join(c if c.isalnum() else "-" for c in name).strip("-")[:40]
    return f"w{index}-{text}" if text else f"w{index}"
