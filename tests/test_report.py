"""The report: loader, statistics, verdicts, outputs, escaping - on SYNTHETIC pyperf files made by
devtools.synthetic (known answers) and on one real smoke run kept in tests/fixtures/real-smoke."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from devtools.synthetic import SyntheticRun, write_run
from gilmatrix.errors import UserError
from gilmatrix.reports import build_report, load_frame
from gilmatrix.reports.charts import build_charts
from gilmatrix.reports.compare import baseline_changes, free_threading, version_changes
from gilmatrix.reports.formatting import format_interval, format_speedup_interval
from gilmatrix.reports.results import RunFacts, load_run
from gilmatrix.reports.stats import cell_table, t_quantile, welch, welch_from_stats
from gilmatrix.reports.verdicts import decide

REAL = Path(__file__).parent / "fixtures" / "real-smoke"
QUICK = Path(__file__).parent / "fixtures" / "real-quick"  # every workload and executor
TIE = ("3.12", "fetch/threads/4"), ("3.12", "fetch/processes/4")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SyntheticRun(
        noisy_cells={key: 8.0 for key in TIE},  # overlapping intervals: must read "tie"
        cell_failures={
            ("3.14", "crunch/processes/4"): (
                "timeout",
                "cell exceeded 60 s",
                "Traceback: ...\nTimeoutExpired",
            )
        },
        not_run={"3.15t": ("skipped", "no CPython 3.15t found on this host")},
        interpreters=("3.12", "3.13", "3.13t", "3.14", "3.14t", "3.15t"),
    )
    return write_run(tmp_path_factory.mktemp("run"), spec)


@pytest.fixture(scope="module")
def cells(run_dir: Path) -> pd.DataFrame:
    return cell_table(load_frame(run_dir))


@pytest.fixture(scope="module")
def report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(run_dir, tmp_path_factory.mktemp("report"))


def card_for(cells: pd.DataFrame, workload: str, interp: str):
    return next(c for c in decide(cells) if (c.workload, c.interpreter) == (workload, interp))


# -- loading ---------------------------------------------------------------------------------


def test_frame_is_tidy_one_row_per_value(run_dir: Path) -> None:
    frame = load_frame(run_dir)
    # 5 interpreters ran x 3 workloads x 7 cells, minus the failed one; 2 runs x 5 values each
    assert len(frame) == (5 * 3 * 7 - 1) * 10
    assert {"interpreter", "workload", "executor", "workers", "cell", "value"} <= set(frame.columns)
    assert frame["value"].gt(0).all()
    assert set(frame.loc[frame["executor"] == "sequential", "workers"]) == {1}


def test_missing_manifest_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no manifest\.json"):
        build_report(tmp_path, tmp_path / "out")


def test_unknown_manifest_format_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 2}))
    with pytest.raises(UserError, match="format 2"):
        load_run(tmp_path)


def test_problems_keep_their_reasons(run_dir: Path) -> None:
    problems = load_run(run_dir).problems
    timeout = [p for p in problems if p.status == "timeout"]
    assert [(p.interpreter, p.cell, p.reason) for p in timeout] == [
        ("3.14", "crunch/processes/4", "cell exceeded 60 s")
    ]
    assert sum(p.interpreter == "3.15t" and p.status == "skipped" for p in problems) == 21


# -- statistics --------------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042)])
def test_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_welch_matches_scipy_reference() -> None:
    # scipy.stats.ttest_ind(a, b, equal_var=False) -> t=-4.6082, p=0.0062529 (computed once)
    cmp = welch([1.0, 1.1, 0.9, 1.05], [1.2, 1.3, 1.25])
    assert cmp.p_value == pytest.approx(0.0062529, rel=1e-3)
    assert cmp.significant and cmp.direction == "faster"
    assert cmp.ratio_low < cmp.ratio < cmp.ratio_high < 1


def test_overlapping_samples_are_a_tie() -> None:
    cmp = welch([1.0, 1.2, 0.8, 1.1], [1.05, 0.9, 1.15, 1.0])
    assert not cmp.significant and cmp.direction == "tie"
    assert cmp.ratio_low < 1 < cmp.ratio_high


def test_a_ratio_of_two_scattered_processes_each_has_a_positive_interval() -> None:
    """2 processes a side, scattered: t(1) is 12.7, and the ratio's interval, linear, went
    below zero ("1.44x, 95% interval -1.69-4.57x"). On the log scale it is positive and
    symmetric about the ratio in log; the verdict (the test on the difference) is unchanged."""
    cmp = welch_from_stats(0.0298, 0.012, 2, 0.0207, 0.008, 2)
    assert cmp.ratio == pytest.approx(0.0298 / 0.0207)
    assert 0 < cmp.ratio_low < cmp.ratio < cmp.ratio_high
    assert cmp.ratio_low * cmp.ratio_high == pytest.approx(cmp.ratio**2)
    assert not cmp.significant and cmp.direction == "tie"
    assert re.fullmatch(r"95% interval \d+\.\d\d-\d+\.\d\dx", format_interval(cmp))
    assert re.fullmatch(r"95% interval \d+\.\d\d-\d+\.\d\dx", format_speedup_interval(cmp))
    few = welch_from_stats(0.0298, 0.0, 1, 0.0207, 0.008, 2)
    assert format_interval(few) == format_speedup_interval(few) == "too few processes for an interval"


def test_a_cells_time_interval_is_never_below_zero(tmp_path: Path) -> None:
    """Two scattered processes per cell: the interval of the mean time is on the log scale
    (mean x exp(-+ half / mean)), so its low end is above 0 and the mean within it."""
    spec = SyntheticRun(
        interpreters=("3.12",), workloads=("crunch",), executors=("sequential", "threads"), noise=0.6
    )
    table = cell_table(load_frame(write_run(tmp_path, spec)))
    assert (table["processes"] == 2).all()
    assert ((table["ci_high"] - table["mean"]) / table["mean"]).max() > 1.0  # really scattered
    assert (table["ci_low"] > 0).all()
    assert ((table["ci_low"] < table["mean"]) & (table["mean"] < table["ci_high"])).all()


def test_one_value_says_nothing() -> None:
    cmp = welch_from_stats(1.0, 0.0, 1, 2.0, 0.0, 1)
    assert cmp.direction == "tie" and math.isinf(cmp.ratio_high)


# -- verdicts ----------------------------------------------------------------------------------


def test_gil_build_cpu_winner_is_processes(cells: pd.DataFrame) -> None:
    card = card_for(cells, "crunch", "3.12")
    assert (card.winner.executor, card.winner.workers, card.is_tie) == ("processes", 4, False)
    workers, cmp = card.threads_vs_sequential
    assert workers == 4 and cmp.direction in ("slower", "tie")
    assert "processes 3." in card.headline and "@ 4 workers" in card.headline


def test_free_threaded_cpu_winner_is_threads(cells: pd.DataFrame) -> None:
    card = card_for(cells, "crunch", "3.13t")
    assert card.winner.executor == "threads" and not card.is_tie
    assert any("GIL off" in s.text for s in card.sentences)


def test_overlapping_intervals_read_tie_with_interval(cells: pd.DataFrame) -> None:
    card = card_for(cells, "fetch", "3.12")
    assert card.is_tie and card.headline.startswith("tie:")
    why = card.sentences[1]
    assert why.label == "Why no winner" and "95% interval" in why.text
    assert "won" not in " ".join(s.label for s in card.sentences)


def test_failed_cell_does_not_break_its_card(cells: pd.DataFrame) -> None:
    card = card_for(cells, "crunch", "3.14")
    assert card.winner.executor == "processes" and card.winner.workers == 2


def test_free_threading_overhead_is_measured(cells: pd.DataFrame) -> None:
    ft = free_threading(cells).set_index(["version", "workload"])
    # the toy model: 3.13t is 40% slower single-threaded, 3.14t 8%
    assert ft.loc[("3.13", "crunch"), "overhead"] == pytest.approx(0.40, abs=0.05)
    assert ft.loc[("3.14", "crunch"), "overhead"] == pytest.approx(0.08, abs=0.05)
    assert not ft.loc[("3.13", "fetch"), "significant"]  # a wait costs the same on both


def test_version_changes_stay_within_a_build(cells: pd.DataFrame) -> None:
    steps = set(zip(*[version_changes(cells)[c] for c in ("previous", "interpreter")], strict=True))
    assert steps == {("3.12", "3.13"), ("3.13", "3.14"), ("3.13t", "3.14t")}


def test_baseline_marks_a_significant_regression(tmp_path: Path, cells: pd.DataFrame) -> None:
    slower = write_run(
        tmp_path / "new",
        SyntheticRun(slow_cells={("3.13", "crunch/threads/2"): 1.3}, interpreters=("3.12", "3.13")),
    )
    changes = baseline_changes(cell_table(load_frame(slower)), cells)
    flagged = changes[changes["change"] == "regression"]
    assert ("3.13", "crunch/threads/2") in set(zip(flagged["interpreter"], flagged["cell"], strict=True))
    assert len(changes) == 2 * 21


def test_chart_specs_are_valid_vega_lite(cells: pd.DataFrame) -> None:
    charts = build_charts(cells, version_changes(cells), validate=True)
    # per workload: time, speedup, parallelism, memory, versions; heatmap, ft time, ft memory,
    # ft scaling, versions
    assert len(charts.charts) == 3 * 5 + 5
    assert "ft-memory" in {c.id for c in charts.charts}
    for chart in charts.charts:
        assert "datasets" not in chart.spec and chart.spec["data"]["name"] in chart.datasets


# -- the outputs -------------------------------------------------------------------------------


def test_report_writes_all_outputs(report: Path) -> None:
    out = report.parent
    for name in (
        "index.html",
        "data.csv",
        "values.csv",
        "summary.md",
        "results/manifest.json",
        "results/3.12.json",
        "charts/heatmap.svg",
        "charts/heatmap.png",
    ):
        assert (out / name).is_file(), name
    data = pd.read_csv(out / "data.csv")
    assert {"mean_s", "median_s", "stdev_s", "n", "speedup", "efficiency"} <= set(data.columns)
    assert len(data) == 5 * 3 * 7 - 1


def test_cli_report_without_chart_images(tmp_path: Path) -> None:
    from tests.conftest import gilmatrix

    proc = gilmatrix("report", str(REAL), "--out", str(tmp_path), "--no-chart-images")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "report"
    assert (out / "index.html").is_file() and (out / "data.csv").is_file()
    assert not (out / "charts").exists()
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "charts/heatmap.svg" not in html and '"$schema"' in html  # the page's own charts


def test_page_is_self_contained(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert html.count("window.vegaEmbed=") == 1  # one inline bundle
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=[\"']https?:", html)
    payload = json.loads(
        re.search(r'<script type="application/json" id="gm-payload">(.*?)</script>', html, re.S).group(1)
    )
    containers = re.findall(r'<div class="chart" id="chart-([^"]+)"', html)
    assert sorted(containers) == sorted(c["id"] for c in payload["charts"])
    assert len(containers) == 20
    assert len(report.read_bytes()) < 5_000_000


def test_page_lists_problems_and_environment(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert "cell exceeded 60 s" in html and "TimeoutExpired" in html
    assert "no CPython 3.15t found on this host" in html and "21 cells" in html
    assert "SYNTHETIC DATA" in html
    assert "--disable-gil" in html and "Synthetic CPU @ 3.0GHz" in html
    assert "tie:" in html and "95% interval" in html


def test_labels_are_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    run = write_run(
        tmp_path / "run",
        SyntheticRun(
            interpreters=("3.13",),
            workloads=("crunch", evil),
            workload_kinds={evil: "cpu"},
            cell_failures={("3.13", f"{evil}/threads/2"): ("failed", f"boom {evil}", evil)},
        ),
    )
    index = build_report(run, tmp_path / "out", chart_images=False)
    html = index.read_text(encoding="utf-8")
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert evil not in summary and "&lt;script&gt;" in summary


def test_partial_run_without_any_result_still_builds(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "run",
        SyntheticRun(interpreters=("3.14",), not_run={"3.14": ("failed", "image build failed")}),
    )
    html = build_report(run, tmp_path / "out").read_text(encoding="utf-8")
    assert "image build failed" in html and "No cell of this run has a result" in html


def test_real_smoke_run(tmp_path: Path) -> None:
    """The report of a real smoke run of the pipeline (3.10-3.13 on a 2-core host)."""
    index = build_report(REAL, tmp_path / "out", chart_images=False)
    cells = cell_table(load_frame(REAL))
    assert set(cells["interpreter"]) == {"3.10", "3.11", "3.12", "3.13"}
    for interp in ("3.10", "3.11", "3.12", "3.13"):
        card = card_for(cells, "crunch", interp)
        assert card.winner.executor == "processes" or card.is_tie
        assert card_for(cells, "fetch", interp).winner.executor == "threads"
    html = index.read_text(encoding="utf-8")
    assert "no CPython 3.14t found" in html


def test_baseline_report(run_dir: Path, tmp_path: Path) -> None:
    html = build_report(run_dir, tmp_path / "out", baseline=run_dir, chart_images=False).read_text(
        encoding="utf-8"
    )
    assert "Against the baseline run" in html and "0 significant regressions" in html
    with pytest.raises(UserError):
        build_report(run_dir, tmp_path / "out2", baseline=tmp_path / "nothing")


@pytest.mark.parametrize(
    "path",
    [REAL / "3.10.json", REAL / "3.13.json", QUICK / "3.12.json", QUICK / "3.13.json"],
    ids=["smoke-3.10", "smoke-3.13", "quick-3.12", "quick-3.13"],
)
def test_fast_suite_reader_agrees_with_pyperf(path: Path) -> None:
    import pyperf

    from gilmatrix.reports.results import _from_pyperf, read_suite

    fast = read_suite(path)
    slow = [_from_pyperf(b) for b in pyperf.BenchmarkSuite.load(str(path))]
    assert [(b.name, b.runs) for b in fast] == [(b.name, b.runs) for b in slow]
    for f, s in zip(fast, slow, strict=True):
        keys = {k for k in s.metadata if k.startswith("gilmatrix_")}
        assert keys and {k: f.metadata[k] for k in keys} == {k: s.metadata[k] for k in keys}


def test_interpreters_say_how_they_were_built_and_mixed_builds_are_warned(tmp_path: Path) -> None:
    """A run whose 3.10 is a copied install prefix and 3.11 a source build (the docker backend
    records which in each environment): the table says so, and the report warns that
    comparing the two groups mixes build flags with version."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(REAL, run)
    manifest = json.loads((run / "manifest.json").read_text())
    envs = {i: manifest["interpreters"][i]["environment"] for i in ("3.10", "3.11")}
    envs["3.10"].update(backend="docker", kind="prefix", prefix="/root/.pyenv/versions/3.10.13")
    envs["3.11"].update(
        backend="docker", kind="source", source_file="Python-3.11.2.tgz", build_profile="fast"
    )
    (run / "manifest.json").write_text(json.dumps(manifest))
    html = build_report(run, tmp_path / "report", chart_images=False).read_text()
    assert "copied prefix /root/.pyenv/versions/3.10.13 (its own build flags)" in html
    assert "built from Python-3.11.2.tgz (fast profile)" in html
    assert "host interpreter" in html  # 3.12 and 3.13 stayed local
    assert "3.10: copied install prefixes with their own build flags" in html
    plain = build_report(REAL, tmp_path / "plain", chart_images=False).read_text()
    assert "copied install prefixes" not in plain


def test_a_cell_stopped_by_the_budget_within_its_target_is_not_called_a_miss():
    """A budget-stopped cell whose own interval is inside the target was not accepted by the
    stopping rule yet (quieter than its model's typical scatter): the page says "not confirmed",
    never "missed" next to a figure that meets the target, and lists it apart."""
    import pandas as pd

    from gilmatrix.reports.page import budget_outcome, measurement, precision_text

    spent = {"target": 0.02, "stopped": "run-budget"}
    assert precision_text(0.015, spent) == "±1.5% (within ±2.0%, not confirmed before the budget ran out)"
    assert precision_text(0.032, spent) == "±3.2% (target ±2.0% missed)"
    assert precision_text(0.015, {"target": 0.02, "stopped": "precision"}) == "±1.5%"
    assert budget_outcome(None, spent) == "missed"
    assert budget_outcome(0.02, {**spent, "stopped": "budget"}) == "unconfirmed"
    assert budget_outcome(0.05, {"target": 0.02, "stopped": "max-processes"}) is None
    manifest = {
        "schedule": {"sampling": {"mode": "adaptive", "target": 0.02, "min_processes": 4}, "rounds": []}
    }
    sampled = {
        ("3.13", "crunch/threads/2"): {**spent, "status": "ok", "precision": 0.015, "processes": 4},
        ("3.13", "crunch/threads/4"): {**spent, "status": "ok", "precision": 0.057, "processes": 4},
        ("3.12", "crunch/threads/2"): {
            "target": 0.02,
            "stopped": "precision",
            "status": "ok",
            "precision": 0.01,
        },
    }
    facts = replace(RunFacts.of(manifest), sampled=sampled)
    m = measurement(facts, pd.DataFrame({"precision": [0.015, 0.057, 0.01]}))
    assert m["missed"] == [("3.13", "crunch/threads/4", "±5.7%", "±2.0%", 4)]
    assert m["unconfirmed"] == [("3.13", "crunch/threads/2", "±1.5%", "±2.0%", 4)]
