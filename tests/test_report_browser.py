"""The report in a real browser: Debian's chromium, headless, driven by playwright.

Opens index.html from file://, waits for every chart, and checks what a reader would notice:
a chart that did not draw, a request to the network, an error in the console. Saves a
screenshot to _build/test-artifacts/report.png for CI to upload.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.synthetic import SyntheticRun, write_run
from gilmatrix.reports import build_report

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ARTIFACTS = Path(__file__).resolve().parents[1] / "_build" / "test-artifacts"


@pytest.fixture(scope="module")
def page_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SyntheticRun(
        noisy_cells={("3.12", "fetch/threads/4"): 8.0, ("3.12", "fetch/processes/4"): 8.0},
        cell_failures={("3.14", "crunch/processes/4"): ("timeout", "cell exceeded 60 s", None)},
    )
    run = write_run(tmp_path_factory.mktemp("run"), spec)
    return build_report(run, tmp_path_factory.mktemp("report"), baseline=run, chart_images=False)


def test_every_chart_renders_offline_without_errors(browser, page_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1320, "height": 900})
    page = context.new_page()
    requests, problems = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on(
        "console",
        lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.goto(page_path.as_uri())
    page.wait_for_function("document.body.dataset.chartsDone === '1'", timeout=60_000)

    expected = page.locator("div.chart").count()
    assert expected >= 13
    assert page.locator("div.chart[data-rendered='error']").count() == 0
    assert page.locator("div.chart svg.marks, div.chart canvas.marks").count() == expected
    assert [u for u in requests if not u.startswith("file:")] == []
    assert problems == []

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
    page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)

    # the page's controls drive the charts: untick an executor, the charts redraw without it
    page.uncheck("input.pick-executor[value='processes']")
    page.wait_for_timeout(300)
    visible = page.locator("table.numbers tbody tr:not(.hidden) td:nth-child(2)").all_inner_texts()
    assert visible and "processes" not in visible
    page.select_option("#pick-workload", index=1)
    assert page.locator("section.workload:not(.hidden)").count() == 1
    assert problems == []
    context.close()


def test_real_smoke_report_renders(browser, tmp_path: Path) -> None:
    real = Path(__file__).parent / "fixtures" / "real-smoke"
    index = build_report(real, tmp_path / "out", chart_images=False)
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(index.as_uri())
    page.wait_for_function("document.body.dataset.chartsDone === '1'", timeout=60_000)
    charts = page.locator("div.chart").count()
    assert charts > 0 and page.locator("div.chart svg.marks").count() == charts
    assert problems == []
    page.close()


def test_labels_render_as_text(browser, tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    run = write_run(
        tmp_path / "run",
        SyntheticRun(interpreters=("3.13",), workloads=(evil,), workload_kinds={evil: "cpu"}),
    )
    index = build_report(run, tmp_path / "out", chart_images=False)
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(index.as_uri())
    page.wait_for_function("document.body.dataset.chartsDone === '1'", timeout=60_000)
    assert dialogs == []
    assert evil in page.locator("section.workload h2").first.inner_text()
    page.close()


def test_real_quick_report_renders(browser, tmp_path: Path) -> None:
    """Every execution model and workload of a real quick run: parallelism and memory charts
    draw, the cards show cores and class, and the skipped cells are listed."""
    real = Path(__file__).parent / "fixtures" / "real-quick"
    index = build_report(real, tmp_path / "out", chart_images=False)
    page = browser.new_page(viewport={"width": 1320, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(index.as_uri())
    page.wait_for_function("document.body.dataset.chartsDone === '1'", timeout=60_000)
    charts = page.locator("div.chart").count()
    assert charts > 0 and page.locator("div.chart svg.marks").count() == charts
    for kind in ("parallelism", "memory"):
        drawn = page.locator(f"div.chart[id^='chart-{kind}-'] svg .mark-line path")
        assert drawn.count() > 0, kind
    assert page.locator(".card .cores").count() > 0
    assert page.locator("table.skipped-cells tbody tr").count() == 2
    assert problems == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("section.workload").last.screenshot(path=str(ARTIFACTS / "report-startup.png"))
    page.close()
