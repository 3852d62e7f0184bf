"""The report on every execution model and workload shape: CPU time, effective parallelism,
class, parallel efficiency, peak memory, fixed costs (startup) and cells skipped by the plan.

Real data: tests/fixtures/real-quick is a quick-profile run of 3.12 and 3.13 on a busy 2-core
host (so parallelism rarely reaches 2: other builds were running). Nothing here asserts a
timing; the checks are on what the harness recorded and how the report shows it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from devtools.synthetic import SyntheticRun, write_run
from gilmatrix.harness.contract import EXECUTOR_ORDER
from gilmatrix.reports import build_report, load_frame
from gilmatrix.reports.charts import EXECUTOR_COLORS, build_charts, executor_colors
from gilmatrix.reports.compare import with_speedup
from gilmatrix.reports.results import load_run, read_suite
from gilmatrix.reports.stats import cell_table
from gilmatrix.reports.verdicts import decide

FIXTURES = Path(__file__).parent / "fixtures"
QUICK = FIXTURES / "real-quick"
SMOKE = FIXTURES / "real-smoke"
NEW_COLUMNS = {
    "cpu_time_s",
    "parallelism",
    "parallel_efficiency",
    "class",
    "peak_rss_bytes",
    "model",
    "start_method",
    "async_mode",
    "pool_in_timing",
}


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(QUICK, tmp_path_factory.mktemp("quick"), chart_images=False)


@pytest.fixture(scope="module")
def quick_data(quick_report: Path) -> pd.DataFrame:
    return pd.read_csv(
        quick_report.parent / "data.csv", dtype={"interpreter": str}, keep_default_na=False, na_values=[""]
    ).set_index(["interpreter", "cell"])


@pytest.fixture(scope="module")
def quick_cells() -> pd.DataFrame:
    return cell_table(load_frame(QUICK))


# -- data.csv on real data ---------------------------------------------------------------------


def test_quick_data_has_the_new_columns(quick_data: pd.DataFrame) -> None:
    assert set(quick_data.columns) >= NEW_COLUMNS
    assert len(quick_data) == 2 * 74
    measured = quick_data[quick_data["class"].notna()]
    assert set(measured["class"]) <= {
        "waiting",
        "serialized",
        "parallel native",
        "parallel bytecode",
        "unknown",
    }


def test_fetch_cells_are_waiting(quick_data: pd.DataFrame) -> None:
    fetch = quick_data[quick_data["workload"] == "fetch"]
    assert len(fetch) == 2 * 10
    assert set(fetch["class"]) == {"waiting"}
    assert fetch["parallelism"].lt(0.5).all()
    assert fetch["cpu_time_s"].lt(fetch["mean_s"] / 2).all()


def test_cpu_bound_cells_keep_a_core_busy(quick_data: pd.DataFrame) -> None:
    seq = quick_data.loc[[("3.12", "crunch/sequential/1"), ("3.12", "hash_native/sequential/1")]]
    assert seq["parallelism"].between(0.8, 1.2).all()
    assert set(seq["class"]) == {"serialized"}
    # CPU time is per loop iteration, like the values: close to the wall time on one core
    assert (seq["cpu_time_s"] / seq["mean_s"]).between(0.8, 1.2).all()


def test_how_each_cell_ran(quick_data: pd.DataFrame) -> None:
    models = quick_data.groupby("executor")["model"].unique().map(list).to_dict()
    assert models == {
        "sequential": ["sequential"],
        "threads": ["threads"],
        "processes": ["processes"],
        "asyncio": ["asyncio"],
    }
    procs = quick_data[quick_data["model"] == "processes"]
    assert set(procs["start_method"]) == {"fork"}  # the Linux default before 3.14
    assert quick_data.loc[quick_data["model"] != "processes", "start_method"].isna().all()
    asyncio = quick_data[quick_data["executor"] == "asyncio"].set_index("workload")
    assert set(asyncio.loc["fetch", "async_mode"]) == {"native"}
    assert set(asyncio.loc["crunch", "async_mode"]) == {"to_thread"}
    assert set(quick_data.loc[quick_data["workload"] == "startup", "pool_in_timing"]) == {"yes"}
    assert set(quick_data.loc[quick_data["workload"] != "startup", "pool_in_timing"]) == {"no"}


def test_parallel_efficiency_is_against_one_worker(quick_data: pd.DataFrame) -> None:
    one = quick_data[(quick_data["workers"] == 1) & (quick_data["executor"] != "sequential")]
    assert one["parallel_efficiency"].eq(1.0).all()
    assert quick_data.loc[quick_data["executor"] == "sequential", "parallel_efficiency"].isna().all()
    t1 = quick_data.loc[("3.12", "fetch/threads/1"), "mean_s"]
    t4 = quick_data.loc[("3.12", "fetch/threads/4"), "mean_s"]
    assert quick_data.loc[("3.12", "fetch/threads/4"), "parallel_efficiency"] == pytest.approx(t1 / (4 * t4))


def test_peak_memory_counts_the_pool_processes(quick_data: pd.DataFrame) -> None:
    rss = quick_data["peak_rss_bytes"]
    for workers in (1, 2, 4):
        procs = rss[("3.13", f"crunch/processes/{workers}")]
        threads = rss[("3.13", f"crunch/threads/{workers}")]
        assert procs > threads + workers * 10e6  # each worker process holds its own interpreter
    # a pool created inside the timed region is gone before its memory can be read
    assert pd.isna(rss[("3.12", "startup/processes/2")])
    assert rss[("3.12", "startup/threads/2")] > 0


def test_one_thread_cannot_run_in_parallel(quick_cells: pd.DataFrame) -> None:
    """startup/sequential times a call of microseconds; its CPU/wall above 1 is an artifact."""
    row = quick_cells.set_index(["interpreter", "cell"]).loc[("3.12", "startup/sequential/1")]
    assert row["parallelism"] > 1.3 and row["cpu_class"] == "unknown"
    assert any("too short to classify" in w for w in row["warnings"])


# -- the page on real data ---------------------------------------------------------------------


def test_quick_page_shows_parallelism_and_class(quick_report: Path) -> None:
    html = quick_report.read_text(encoding="utf-8")
    assert "<th>parallelism</th>" in html and "<th>class</th>" in html
    assert "<th>peak RSS (MB)</th>" in html and "<th>parallel efficiency</th>" in html
    assert 'cores, <span class="class-waiting">waiting</span>' in html  # a card's metric
    assert "processes (fork)" in html and "asyncio (native)" in html
    payload = json.loads(html.split('id="gm-payload">', 1)[1].split("</script>", 1)[0])
    ids = {c["id"] for c in payload["charts"]}
    workloads = [
        "crunch",
        "fetch",
        "sum_squares",
        "hash_native",
        "contention_lock",
        "contention_dict",
        "mixed",
        "startup",
    ]
    for index, name in enumerate(workloads):
        slug = f"w{index}-{name.replace('_', '-')}"
        assert f"parallelism-{slug}" in ids and f"memory-{slug}" in ids
        assert (f"speedup-{slug}" in ids) == (name != "startup")


def test_quick_page_lists_skipped_cells_with_reasons(quick_report: Path) -> None:
    html = quick_report.read_text(encoding="utf-8")
    assert "Skipped by the plan" in html
    assert "InterpreterPoolExecutor (PEP 734) needs CPython 3.14 or newer" in html
    assert "48 cells" in html and "12 cells" in html
    assert "which workers in other processes or interpreters cannot do" in html
    # and in the sections whose cells are missing
    assert "Not run: processes - its state is shared by reference" in html
    summary = (quick_report.parent / "summary.md").read_text(encoding="utf-8")
    assert "skipped on 3.12, 3.13, 48 cells" in summary


def test_startup_is_a_fixed_cost(quick_cells: pd.DataFrame) -> None:
    for card in decide(quick_cells):
        if card.workload != "startup":
            assert not card.fixed_cost
            continue
        assert card.fixed_cost and card.winner.executor != "sequential"
        assert card.threads_vs_sequential is None
        text = " ".join(s.text for s in card.sentences)
        # one worker process per cell in this fixture: no interval, so no difference is called
        assert "the same as threads to start at 1 worker within the noise" in text
        assert "too few processes for an interval" in text
        assert "speedup" not in text
        procs = [fc for fc in card.fixed_costs if fc.executor == "processes"]
        assert [fc.workers for fc in procs] == [1, 2, 4]
        assert all(fc.extra > 0 and not fc.significant for fc in procs)
        assert card.headline.startswith("tie: ")  # nothing significant from one process
        assert f"to start @ {card.winner.workers}" in card.headline


def test_fetch_cards_say_waiting(quick_cells: pd.DataFrame) -> None:
    cards = [c for c in decide(quick_cells) if c.workload == "fetch"]
    assert len(cards) == 2
    for card in cards:
        assert {s.cpu_class for s in card.scores} == {"waiting"}
        assert all(s.parallelism < 0.5 for s in card.scores)


# -- older results, without the new keys -------------------------------------------------------


def test_old_results_show_a_dash(tmp_path: Path) -> None:
    index = build_report(SMOKE, tmp_path / "out", chart_images=False)
    data = pd.read_csv(tmp_path / "out" / "data.csv")
    assert set(data.columns) >= NEW_COLUMNS
    assert data["parallelism"].isna().all() and data["cpu_time_s"].isna().all()
    assert data["class"].isna().all()
    # no children's memory recorded: a process pool's peak would leave most of it out
    assert data.loc[data["executor"] == "processes", "peak_rss_bytes"].isna().all()
    assert data.loc[data["executor"] == "threads", "peak_rss_bytes"].gt(0).all()
    assert set(data["model"]) == {"sequential", "threads", "processes"}
    html = index.read_text(encoding="utf-8")
    assert "<td>—<td>—<td>—" in html  # CPU, parallelism, class
    assert "parallelism-w0-crunch" not in html  # nothing to draw


# -- per-run figures, colours, synthetic -------------------------------------------------------


def test_run_figures_are_summarised_per_run(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "run",
        SyntheticRun(interpreters=("3.13t",), workloads=("crunch",), runs=3, values=4, noise=0.2),
    )
    suite = {b.name: b for b in read_suite(run / "3.13t.json")}
    cells = cell_table(load_frame(run)).set_index("cell")
    for name in ("crunch/threads/4", "crunch/processes/2"):
        runs = suite[name].runs
        parallelism = [facts["gilmatrix_parallelism"] for _, _, facts in runs]
        assert len(set(parallelism)) == 3  # per-run metadata, not hoisted to the benchmark
        assert cells.loc[name, "parallelism"] == pytest.approx(sorted(parallelism)[1])
        classes = [facts["gilmatrix_class"] for _, _, facts in runs]
        assert cells.loc[name, "cpu_class"] == max(set(classes), key=classes.count)
    assert cells.loc["crunch/threads/4", "cpu_class"] == "parallel bytecode"
    rss = cells.loc["crunch/processes/2", "peak_rss"]
    assert rss > 30e6 + 2 * 22e6 - 1


def test_parallel_efficiency_on_the_toy_model(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", SyntheticRun(interpreters=("3.12",), noise=0.0001))
    speed = with_speedup(cell_table(load_frame(run))).set_index("cell")
    # the toy fetch: 8 waits of 10 ms, 4 workers overlap them 4 at a time
    assert speed.loc["fetch/threads/4", "parallel_efficiency"] == pytest.approx(
        speed.loc["fetch/threads/1", "mean"] / (4 * speed.loc["fetch/threads/4", "mean"])
    )
    assert 0.9 < speed.loc["fetch/threads/4", "parallel_efficiency"] <= 1.0


def test_executor_colours_are_stable() -> None:
    assert len(EXECUTOR_ORDER) == 8 and set(EXECUTOR_ORDER) == set(EXECUTOR_COLORS)
    assert len(set(EXECUTOR_COLORS.values())) == 8
    assert executor_colors(["threads", "asyncio"]) == [EXECUTOR_COLORS["threads"], EXECUTOR_COLORS["asyncio"]]
    assert executor_colors(["sequential", "threads", "mystery"])[:2] == [
        EXECUTOR_COLORS["sequential"],
        EXECUTOR_COLORS["threads"],
    ]


def test_every_executor_name_charts(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "run",
        SyntheticRun(interpreters=("3.14",), workloads=("crunch",), executors=EXECUTOR_ORDER),
    )
    cells = cell_table(load_frame(run))
    charts = build_charts(cells, validate=True)
    assert charts.executors == EXECUTOR_ORDER
    spec = next(c for c in charts.charts if c.id.startswith("parallelism-")).spec
    scale = json.dumps(spec)
    assert all(EXECUTOR_COLORS[name] in scale for name in EXECUTOR_ORDER)
    html = build_report(run, tmp_path / "out", chart_images=False).read_text(encoding="utf-8")
    assert "processes-spawn" in html and not math.isnan(cells["parallelism"].iloc[0])


def test_problems_are_split(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "run",
        SyntheticRun(
            interpreters=("3.13", "3.14"),
            cell_failures={("3.13", "crunch/processes/2"): ("failed", "boom", None)},
        ),
    )
    results = load_run(run)
    assert [p.status for p in results.problems] == ["failed"]
    html = build_report(run, tmp_path / "out", chart_images=False).read_text(encoding="utf-8")
    assert "Failed, timed out or missing" in html and "Skipped by the plan" not in html


# -- a noisy run says so -----------------------------------------------------------------------


def test_a_high_noise_floor_is_a_banner_with_what_to_do(tmp_path: Path, quick_cells: pd.DataFrame) -> None:
    """The real quick run, its manifest given the floor a busy VM measured (16.5%): the page's
    first warning names the floor, how many verdicts it made ties, and what to do; at a quiet
    floor there is no such banner."""
    import shutil

    from gilmatrix.reports.page import noise_banner

    cards = decide(quick_cells, {}, 0.165)
    ties = sum(card.is_tie for card in cards)
    assert 0 < ties <= len(cards)
    text = noise_banner(0.165, cards, 0.01)
    assert text is not None and text.startswith("Noisy machine: this run's noise floor was ±16.5%")
    assert f"So {ties} of the {len(cards)} fastest-execution-model verdicts are ties" in text
    assert "rigorous profile" in text and "more CI shards" in text
    assert noise_banner(0.02, cards, 0.01) is None

    run = tmp_path / "noisy"
    shutil.copytree(QUICK, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.setdefault("schedule", {})["noise"] = {"floor": 0.165, "sentinel_median_ms": 7.3}
    (run / "manifest.json").write_text(json.dumps(manifest))
    index = build_report(run, tmp_path / "report", chart_images=False)
    page = index.read_text()
    first = page.index('<p class="warning">')
    assert page[first:].startswith('<p class="warning">Noisy machine: this run&#39;s noise floor was ±16.5%')
    assert "Noisy machine" in (index.parent / "summary.md").read_text()
    quiet = build_report(QUICK, tmp_path / "quiet", chart_images=False).read_text()
    assert "Noisy machine" not in quiet


def test_inside_a_run_a_change_must_exceed_1_percent_not_the_noise_floor(tmp_path: Path) -> None:
    """A run of 12 processes a cell whose manifest says a busy VM's 16.5% floor: 3.14's 3% gain
    over 3.13, its intervals ±1%, is called an improvement (confidence.within_run_floor: 1%
    inside a run); held to the band (16.5% x sqrt(2/12) = 6.7%) as before session 17, it was
    "no significant change" — the band cost a third of one run's 5% changes for almost no false
    one (results log, session 17). The banner still says the band."""
    from gilmatrix.reports.analysis import analyse_run
    from gilmatrix.reports.compare import version_changes

    shape = SyntheticRun(interpreters=("3.13", "3.14"), workloads=("crunch",), runs=12)
    run = write_run(tmp_path / "noisy", shape)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.setdefault("schedule", {})["noise"] = {"floor": 0.165, "sentinel_median_ms": 7.3}
    (run / "manifest.json").write_text(json.dumps(manifest))
    analysis = analyse_run(load_run(run))
    assert len(analysis.versions) > 0 and (analysis.versions["change"] == "improvement").all()
    assert (version_changes(analysis.cells, 0.165)["change"] == "no significant change").all()
    html = build_report(run, tmp_path / "report", chart_images=False).read_text()
    assert "noise floor was ±16.5%" in html


def test_a_machine_busy_in_bursts_is_a_banner_though_its_floor_is_low(quick_cells: pd.DataFrame) -> None:
    """The floor leaves disturbed windows out: a burner that slows the machine in bursts (the
    noisy full matrix of 2026-12-04: 118 of 199 windows disturbed, floor 1.8%, median ±6.9%)
    must still be said, with the figures that made the verdicts ties."""
    from gilmatrix.reports.page import noise_banner
    from gilmatrix.reports.results import RunFacts

    cards = decide(quick_cells, {}, 0.018)
    windows = [{"disturbed": i % 5 < 3, "sentinel_after_ms": 8.8 if i % 5 < 3 else 4.1} for i in range(20)]
    facts = RunFacts.of(
        {
            "schedule": {
                "windows": windows,
                "noise": {"floor": 0.018, "sentinel_median_ms": 4.0},
                "sampling": {"mode": "adaptive", "target": 0.02},
            }
        }
    )
    wide = quick_cells.assign(precision=0.069, processes=4)
    text = noise_banner(0.018, cards, 0.01, facts, wide)
    assert text is not None and "noise floor was" not in text  # the floor itself was low
    assert "12 of 20 windows of worker processes ran on a disturbed machine, the sentinel up to +120%" in text
    assert f"median ±6.9% against the ±2% target, {len(wide)} of {len(wide)} cells missed it" in text
    assert "most with 4 processes when their budget ran out." in text  # no cell said why
    # what stopped them: the run's minutes, or each cell's own cap (the run ended before its
    # minutes: session 22's noisy run of 13 of its 20 minutes, every cell at 24 processes)
    for stopped, said in (
        ("run-budget", "most with 4 processes when the run's budget ran out."),
        ("budget", "most with 4 processes when their own budget ran out (the profile's max_processes "
         "or max_seconds), not the run's."),
    ):  # fmt: skip
        cells = [{"interpreter": "3.13", "id": f"c{i}", "stopped": stopped} for i in range(3)]
        cells.append({"interpreter": "3.13", "id": "quiet", "stopped": "precision"})
        stopped_facts = RunFacts.of({"schedule": facts.schedule, "cells": cells})
        assert said in (noise_banner(0.018, cards, 0.01, stopped_facts, wide) or "")
    # a quiet run says nothing
    calm = RunFacts.of({"schedule": {"windows": [{"disturbed": False}] * 20, "sampling": {"target": 0.02}}})
    assert noise_banner(0.018, cards, 0.01, calm, quick_cells.assign(precision=0.01)) is None


def test_a_noisy_run_says_what_a_tie_rules_out_and_what_a_5_percent_change_would_take(
    tmp_path: Path, quick_cells: pd.DataFrame
) -> None:
    """The reach of a run (reports/power.py) in the banner — the widest change a tie may hide,
    the minutes finding 5% would take, the shards that would measure them — and in the
    measurement table of a run (synthetic, 6 processes a cell, a schedule of 90 s)."""
    from gilmatrix.reports.page import noise_banner, reach_text
    from gilmatrix.reports.power import MOST, Reach, RunReach

    cards = decide(quick_cells, {}, 0.165)
    reached = RunReach(
        (Reach("one worker", 552, 4, 0.084, 9), Reach("pools", 1682, 4, 0.174, 27)),
        32.5,
        139.0,
        budgeted=True,
    )
    text = noise_banner(0.165, cards, 0.01, reached=reached)
    assert text is not None
    assert (
        "A tie here rules out only changes above about 17%; finding a 5% change 90% of the time "
        "would take about 139 minutes of measuring at this noise (this run: 32)." in text
    )
    assert "split the matrix into 5 CI shards" in text
    assert reach_text(reached) == (
        "A tie here rules out only larger changes: the median comparison would have found, 90% of "
        "the time, a change of 8.4% (552 comparisons of cells of one in-process worker, 4 "
        "processes a cell) or 17.4% (1682 comparisons with a pool on either side, 4 processes a "
        "cell). To find a 5% change as often it needs 9 and 27 processes a cell: about 139 "
        "minutes of measuring at this run's noise, against the 32.5 it measured"
    )
    capped = RunReach(reached.kinds, 32.5, 139.0, max_processes=24)
    assert reach_text(capped).endswith(
        "; the profile stops a cell at 24 processes, so more minutes or shards alone do not get "
        "there: a profile of your own with max_processes of 27"
    )
    # capped: more minutes or shards end at the cap, so no shards alone are advised; where the
    # run's budget stopped the cells, shards with the profile's cap raised
    said = noise_banner(0.165, cards, 0.01, reached=capped) or ""
    assert "a profile of your own with max_processes of 27. To say more" in said
    assert said.endswith("use the rigorous profile, or a profile of your own as above.")
    assert "CI shards" not in said
    both = dataclasses.replace(capped, budgeted=True)
    assert (noise_banner(0.165, cards, 0.01, reached=both) or "").endswith(
        "or a profile of your own as above, in 5 CI shards (each shard's cells get more of the run budget)."
    )
    assert "max_processes" not in reach_text(RunReach(reached.kinds, 32.5, 139.0, max_processes=40))
    # a profile of fixed processes (smoke, quick): no run budget for shards to widen; minutes
    # below 10 keep a decimal, one comparison is one
    fixed = RunReach((Reach("one worker", 1, 2, 0.312, 13),), 0.1, 0.6, max_processes=2, fixed=True)
    assert "(1 comparison of cells of one in-process worker, 2 processes a cell)" in reach_text(fixed)
    assert reach_text(fixed).endswith(
        "about 0.6 minutes of measuring at this run's noise, against the 0.1 it measured; the "
        "profile gives every cell 2 processes: a profile of your own with precision "
        "(docs/matrix.md) or pyperf processes of 13"
    )
    # shards give a cell of a fixed profile no more processes: the profile of one's own instead
    fixed_said = noise_banner(0.165, cards, 0.01, reached=fixed) or ""
    assert fixed_said.endswith("or a profile of your own as above.") and "CI shards" not in fixed_said
    unreachable = RunReach((Reach("pools", 3, 2, 0.9, MOST + 1),), None, None)
    assert reach_text(unreachable).endswith(f"it needs more than {MOST} processes a cell")
    assert "more CI shards" in (noise_banner(0.165, cards, 0.01, reached=unreachable) or "")
    # a noisy run that measured enough to find 5% anyway (session 21: floor 28.6%, 4.1 minutes
    # against 2.4 needed): its ties are not put down to wide intervals, nor shards advised
    enough = RunReach((Reach("one worker", 27, 16, 0.038, 9), Reach("pools", 3, 16, 0.049, 15)), 4.1, 2.4)
    said = noise_banner(0.286, cards, 0.01, reached=enough) or ""
    assert "and yet the median comparison of each kind would have found a 5% change 90% of the time" in said
    assert "too wide" not in said and "CI shards" not in said
    assert "A tie here rules out only changes above about 5%" in said
    assert said.endswith("To find smaller changes: run on a quieter machine (a self-hosted runner, nothing "
                         "else running) or use the rigorous profile.")  # fmt: skip
    assert "too wide" in (noise_banner(0.286, cards, 0.01, reached=reached) or "")
    run = write_run(
        tmp_path / "scheduled", SyntheticRun(interpreters=("3.13", "3.14"), workloads=("crunch",), runs=6)
    )
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["schedule"] = {
        "sampling": {"mode": "adaptive", "target": 0.02, "max_processes": 6},
        "rounds": [{"seconds": 45.0}] * 2,
    }
    for cell in manifest["cells"]:
        cell["worker_seconds"] = [0.4, 0.4]
    (run / "manifest.json").write_text(json.dumps(manifest))
    page = build_report(run, tmp_path / "quick", chart_images=False).read_text()
    row = page[page.index("<th>what a tie rules out</th>") :].split("</tr>")[0]
    assert "A tie here rules out only larger changes" in row and "processes a cell" in row
    assert "against the 1.5 it measured" in row
    assert "comparisons of cells of one in-process worker, 6 processes a cell" in row
    needs = [int(n) for n in row.split("it needs ")[1].split(" processes")[0].split(" and ")]
    assert ("the profile stops a cell at 6 processes" in row) == (max(needs) > 6), row
