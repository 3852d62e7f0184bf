"""`gilmatrix site`: one static, offline site from the history.

- ``index.html``: the change points, newest first (the page a maintainer opens on Monday): the
  series, the run where the step begins, its size and interval, and what changed at that run
  (the interpreter's release or build, the image, the machine, gilmatrix, the matrix, the
  workload's parameters); then every run (its state, cells, noise floor) with its report.
- ``runs/<run id>/index.html``: each run's report, as ``gilmatrix report`` builds it (built
  again only when the run's digest changed).
- ``history.html``: every series on one Altair chart — each interpreter's mean and 95% interval
  across runs, the change points as rules — with the report's filters (workload, execution
  model, worker count) bound to the chart. Its data travel in columns with their strings
  numbered (a year of the full default matrix is 40,000 cells), made rows again in the page.

Nothing comes from a network: the pages' scripts are inline, and the Vega bundle of the history
page is ``vega.js`` beside it (a relative script, which the file system and GitHub Pages serve
alike), written once per Vega version — making it costs vl-convert's JavaScript engine ~130 MB,
which a weekly build then does not pay. Stage: after the history store (gilmatrix.history.store).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gilmatrix.harness.contract import interpreter_key
from gilmatrix.history.changes import (
    ChangePoint,
    change_points,
    fdr_level,
    first_split_p,
    noise_scale,
    run_variances,
)
from gilmatrix.history.store import History

TEMPLATES = Path(__file__).parent / "templates"
SERIES_KEY = ("workload", "executor", "workers", "interpreter")
# the series that share a noise scale: one workload under one execution model (its cells move
# together between runs: gilmatrix.reports.stats.SHIFT_KEYS), over interpreters and worker counts
NOISE_KEY = ("workload", "executor")
NOISE_MIN_DIFFS = 20  # fewer successive differences in a group: the whole history's scale
CONFIRMED_AFTER = 3  # a step with fewer runs after it is shown as provisional
# what may change from one run to the next, as the site says it: (column, label)
CHANGED = (
    ("version", "interpreter release"),
    ("build", "interpreter build"),
    ("image_id", "image"),
    ("machine", "machine"),
    ("params", "workload parameters"),
    ("tool_version", "gilmatrix"),
    ("matrix_sha256", "matrix file"),
)


@dataclass(frozen=True, slots=True)
class Found:
    """A change point of one series, with the runs around it."""

    series: tuple[str, str, int, str]
    point: ChangePoint
    run_id: str
    started: str
    before: str  # the run before it
    runs_after: int  # runs of the series from the step on
    sigma: float  # the median sd of its runs' log means (run-to-run and each run's interval)
    changed: tuple[str, ...]  # what differs between those two runs' cells, in words

    @property
    def provisional(self) -> bool:
        return self.runs_after < CONFIRMED_AFTER


@dataclass(frozen=True, slots=True)
class Step:
    """The change points of one workload that begin at the same run with the same story (what
    changed there): how the index page lists them, one line each, the series beneath."""

    found: tuple[Found, ...]  # sorted by series; all of one run, workload, direction, story

    @property
    def run_id(self) -> str:
        return self.found[0].run_id

    @property
    def started(self) -> str:
        return self.found[0].started

    @property
    def workload(self) -> str:
        return self.found[0].series[0]

    @property
    def changed(self) -> tuple[str, ...]:
        return self.found[0].changed

    @property
    def ratios(self) -> list[float]:
        return sorted(f.point.ratio for f in self.found)

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def provisional(self) -> bool:
        return any(f.provisional for f in self.found)


def steps_of(found: Sequence[Found]) -> list[Step]:
    """``found`` grouped by run, workload, direction and what changed; newest first."""
    groups: dict[tuple[Any, ...], list[Found]] = {}
    for f in found:
        key = (f.started, f.run_id, f.before, f.series[0], f.point.ratio > 1.0, f.changed)
        groups.setdefault(key, []).append(f)
    out = [Step(tuple(sorted(items, key=lambda f: f.series))) for items in groups.values()]
    out.sort(key=lambda s: (s.started, s.run_id, s.workload), reverse=True)
    return out


def short(text: str) -> str:
    """A digest (64 hex digits, maybe after 'sha256:') cut to 12, as git shows commits."""
    return re.sub(r"\b(sha256:)?([0-9a-f]{12})[0-9a-f]{52}\b", r"\2", text)


def series_of(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[Any, ...], list[Mapping[str, Any]]]:
    """The measured cells of each series, in run order (rows as History.series gives them)."""
    series: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        if row["status"] == "ok" and row["mean"] and row["mean"] > 0:
            series.setdefault(tuple(row[k] for k in SERIES_KEY), []).append(row)
    return series


def within_variance(cell: Mapping[str, Any]) -> float:
    """A run's own variance of its log mean: (its processes' sd / its mean)² / processes (the
    delta method, as its interval is made); NaN when it has fewer than two processes."""
    sd, n, mean = cell.get("proc_sd"), cell.get("processes"), cell.get("mean")
    if sd is None or not n or n < 2 or not mean or not math.isfinite(float(sd)):
        return float("nan")
    return (float(sd) / float(mean)) ** 2 / float(n)


def noise_scales(
    series: Mapping[tuple[Any, ...], Sequence[Mapping[str, Any]]],
) -> tuple[dict[tuple[Any, ...], float], float]:
    """τ (gilmatrix.history.changes.noise_scale: the run-to-run scatter beyond each run's own
    interval) per noise group (NOISE_KEY) from its series' successive differences, and the whole
    history's (used where a group has fewer than NOISE_MIN_DIFFS differences)."""
    groups: dict[tuple[Any, ...], list[Sequence[Mapping[str, Any]]]] = {}
    for key, cells in series.items():
        groups.setdefault(key[: len(NOISE_KEY)], []).append(cells)

    def scale(members: Sequence[Sequence[Mapping[str, Any]]]) -> float:
        values = [[c["mean"] for c in cells] for cells in members]
        within = [[within_variance(c) for c in cells] for cells in members]
        return noise_scale(values, within)

    overall = scale([cells for members in groups.values() for cells in members])
    out = {}
    for group, members in groups.items():
        diffs = sum(max(0, len(cells) - 1) for cells in members)
        out[group] = scale(members) if diffs >= NOISE_MIN_DIFFS else overall
    return out, overall


def run_sds(cells: Sequence[Mapping[str, Any]], tau: float) -> list[float]:
    """Each run's sd of a series' log mean: √(τ² + its own variance as the test counts it:
    gilmatrix.history.changes.run_variances)."""
    own = run_variances([within_variance(c) for c in cells], [c.get("processes") or 0 for c in cells])
    return [math.sqrt(tau * tau + float(w)) for w in own]


def find_changes(rows: Sequence[Mapping[str, Any]], q: float = 0.05) -> tuple[list[Found], float]:
    """Every series' change points (the cells with a result, in run order), each run weighed by
    its own interval plus its group's run-to-run scatter, the series kept at a false discovery
    rate ``q`` over all of them (gilmatrix.history.changes.fdr_level); newest first; and the
    whole history's run-to-run scatter τ."""
    return changes_of(series_of(rows), q)


def changes_of(
    series: Mapping[tuple[Any, ...], Sequence[Mapping[str, Any]]], q: float = 0.05
) -> tuple[list[Found], float]:
    """:func:`find_changes` of series already gathered (:func:`series_of`)."""
    scales, overall = noise_scales(series)
    sds = {key: run_sds(cells, scales[key[: len(NOISE_KEY)]]) for key, cells in series.items()}
    means = {key: [c["mean"] for c in cells] for key, cells in series.items()}
    level = fdr_level([first_split_p(means[key], sigma=sds[key]) for key in series], q)
    out = []
    for key, cells in series.items():
        if level <= 0.0:
            break
        for point in change_points(means[key], sigma=sds[key], alpha=level):
            at, before = cells[point.index], cells[point.index - 1]
            changed = tuple(
                short(f"{label}: {before.get(column) or '?'} → {at.get(column) or '?'}")
                for column, label in CHANGED
                if (before.get(column) or "") != (at.get(column) or "")
            )
            out.append(
                Found(
                    (str(key[0]), str(key[1]), int(key[2]), str(key[3])),
                    point,
                    str(at["run_id"]),
                    str(at["started"] or ""),
                    str(before["run_id"]),
                    len(cells) - point.index,
                    statistics.median(sds[key]),
                    changed,
                )
            )
    out.sort(key=lambda f: (f.started, f.run_id, f.series), reverse=True)
    return out, overall


def chart_data(rows: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The history chart's cells in columns, strings numbered (``strings``: one list per
    column): what the page turns back into rows. Times in ms, four significant digits."""
    named = ("workload", "executor", "interpreter", "version", "machine")
    strings: dict[str, list[str]] = {k: [] for k in named}
    numbers: dict[str, dict[str, int]] = {k: {} for k in strings}

    def code(column: str, value: Any) -> int:
        text = str(value or "")
        found = numbers[column].get(text)
        if found is None:
            found = numbers[column][text] = len(strings[column])
            strings[column].append(text)
        return found

    run_number = {r["run_id"]: i for i, r in enumerate(runs)}
    columns: dict[str, list[Any]] = {k: [] for k in (*strings, "workers", "run", "mean", "low", "high")}
    for r in rows:
        if r["status"] != "ok" or not r["mean"] or r["run_id"] not in run_number:
            continue
        for column in strings:
            columns[column].append(code(column, r[column]))
        columns["workers"].append(int(r["workers"]))
        columns["run"].append(run_number[r["run_id"]])
        for column, value in (("mean", r["mean"]), ("low", r["ci_low"]), ("high", r["ci_high"])):
            columns[column].append(None if value is None else float(f"{1e3 * value:.4g}"))
    return {
        "strings": strings,
        "runs": [{"run": r["run_id"], "started": r["started"] or ""} for r in runs],
        "columns": columns,
    }


def chart_spec(options: Mapping[str, Sequence[Any]], marks: Sequence[Found]) -> dict[str, Any]:
    """The history chart: mean and interval per run, a line per interpreter, filtered by three
    dropdowns bound to the chart's parameters; change points as rules. Its cells are the named
    dataset ``cells`` (filled by the page from chart_data)."""
    import altair as alt

    params = [
        alt.param(
            name=f"pick_{key}",
            value=values[0] if values else None,
            bind=alt.binding_select(options=list(values), name=f"{label} "),
        )
        for (key, label), values in zip(
            (("workload", "workload"), ("executor", "execution model"), ("workers", "workers")),
            (options["workload"], options["executor"], options["workers"]),
            strict=True,
        )
    ]
    keep = " && ".join(f"datum.{key} == pick_{key}" for key in ("workload", "executor", "workers"))
    # the interpreters shown, as the report's checkboxes (the page sets this parameter)
    params.append(alt.param(name="show_interpreters", value=list(options["interpreter"])))
    base = alt.Chart(alt.Data(name="cells")).transform_filter(  # type: ignore[no-untyped-call]
        f"{keep} && indexof(show_interpreters, datum.interpreter) >= 0"
    )
    x = alt.X("started:T", title="run (start, UTC)", scale=alt.Scale(type="utc"))
    colour = alt.Color("interpreter:N")
    line = base.mark_line(point=True).encode(
        x=x,
        y=alt.Y("mean:Q", title="mean per call (ms)", scale=alt.Scale(zero=False)),
        color=colour,
        tooltip=[
            alt.Tooltip("interpreter:N"),
            alt.Tooltip("version:N", title="release"),
            alt.Tooltip("run:N"),
            alt.Tooltip("started:T", format="%Y-%m-%d %H:%M UTC", formatType="utc"),
            alt.Tooltip("mean:Q", title="mean (ms)"),
            alt.Tooltip("low:Q", title="95% low (ms)"),
            alt.Tooltip("high:Q", title="95% high (ms)"),
            alt.Tooltip("machine:N"),
        ],
    )
    bars = base.mark_errorbar().encode(
        x=x, y=alt.Y("low:Q", title="mean per call (ms)"), y2=alt.Y2("high:Q"), color=colour
    )
    steps = [
        {
            "workload": f.series[0],
            "executor": f.series[1],
            "workers": int(f.series[2]),
            "started": f.started,
            "what": f"{f.series[3]}: ×{f.point.ratio:.3f} from {f.run_id}",
        }
        for f in marks
    ]
    rules = (
        alt.Chart(alt.Data(values=steps))  # type: ignore[no-untyped-call]
        .transform_filter(keep)
        .mark_rule(strokeDash=[4, 3], color="#b00")
        .encode(
            x=alt.X("started:T", scale=alt.Scale(type="utc")),
            tooltip=[alt.Tooltip("what:N", title="change point")],
        )
    )
    chart = alt.layer(bars, line, rules).add_params(*params).properties(width=760, height=360)
    spec: dict[str, Any] = chart.to_dict()
    return spec


def build_site(
    history: History,
    out: Path,
    *,
    reports: bool = True,
    q: float = 0.05,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the site of ``history`` into ``out``; the path of its index.html."""
    import jinja2

    from gilmatrix.reports.bundle import javascript_bundle, library_versions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = history.runs_table()
    rows = history.series()
    series = series_of(rows)
    found, overall = changes_of(series, q=q)
    if reports:
        from gilmatrix.reports.render import build_report  # pandas and the analysis: only here
    links = {}
    for run in runs:
        target = out / "runs" / run["run_id"]
        if reports:
            stamp = target / ".digest"
            if not (stamp.exists() and stamp.read_text() == run["digest"]):
                build_report(history.runs / run["run_id"], target, chart_images=False)
                stamp.write_text(run["digest"])
                log(f"report of {run['run_id']}: {target / 'index.html'}")
        if (target / "index.html").exists():
            links[run["run_id"]] = f"runs/{run['run_id']}/index.html"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    data = chart_data(rows, runs)
    options = {
        "interpreter": sorted(set(data["strings"]["interpreter"]), key=interpreter_key),
        "workload": sorted(set(data["strings"]["workload"])),
        "executor": sorted(set(data["strings"]["executor"])),
        "workers": sorted(set(data["columns"]["workers"])),
    }
    common = {
        "runs": [{**r, "problems": json.loads(r["problems"] or "[]")} for r in reversed(runs)],
        "links": links,
        "sigma": overall,
        "q": q,
        "confirmed_after": CONFIRMED_AFTER,
        "cells": len(data["columns"]["run"]),
        "series": len(series),
    }
    index = env.get_template("site-index.html.j2").render(found=found, steps=steps_of(found), **common)
    (out / "index.html").write_text(index, encoding="utf-8")
    spec = _script_json(chart_spec(options, found))
    (out / "history.html").write_text(
        env.get_template("site-history.html.j2").render(
            spec=spec,
            data=_script_json(data),
            bundle=_bundle_file(out, javascript_bundle, library_versions()),
            interpreters=options["interpreter"],
            **common,
        ),
        encoding="utf-8",
    )
    log(f"site: {out / 'index.html'} ({len(runs)} runs, {len(found)} change points)")
    return out / "index.html"


def _bundle_file(out: Path, make: Callable[[], str], versions: Mapping[str, str]) -> str:
    """``out/vega.js`` holding the Vega bundle, written when absent or of other versions (its
    first line names them); its name, for the page's script element."""
    path = out / "vega.js"
    first = "// " + json.dumps(dict(sorted(versions.items())), separators=(",", ":")) + "\n"
    try:
        with path.open(encoding="utf-8") as handle:
            current = handle.readline() == first
    except OSError:
        current = False
    if not current:
        staging = path.with_name(".vega.js.tmp")
        staging.write_text(first + make(), encoding="utf-8")
        staging.replace(path)
    return path.name


def _script_json(value: Any) -> str:
    """JSON to sit in a <script> element ('</' cannot occur there); NaN is not JSON."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return text.replace("</", "<\\/")
