"""`gilmatrix site` on a history of known answer: six weekly copies of a real run, each cell
moved by its own seeded 1% noise, and from the fourth run on 3.12 is another release whose
crunch cells take 15% longer. The site must show that step as a change point where it begins,
say what changed there, and show none anywhere else; its history page must draw in Chromium
and answer its filters. (A flat series is flagged 5% of the time by design: the seeds here are
fixed, and the assertion is that none of this history's flat series is.)"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gilmatrix.history.site import build_site, find_changes, noise_scales, series_of, short, steps_of
from gilmatrix.history.store import History

REAL = Path(__file__).parent / "fixtures" / "real-smoke"
RUNS = 6
STEP_AT = 3  # the fourth run (index 3) is the first with the slower release


def weekly_run(tmp_path: Path, number: int) -> Path:
    run = shutil.copytree(REAL, tmp_path / f"w{number}")
    rng = random.Random(number)
    for suite_path in sorted(run.glob("3.*.json")):
        suite = json.loads(suite_path.read_text())
        for bench in suite["benchmarks"]:
            factor = 1.0 + rng.gauss(0.0, 0.01)
            if (
                suite_path.stem == "3.12"
                and number > STEP_AT
                and bench["metadata"]["name"].startswith("crunch")
            ):
                factor *= 1.15
            for one in bench["runs"]:
                if one.get("values"):
                    one["values"] = [v * factor for v in one["values"]]
        suite_path.write_text(json.dumps(suite))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["run_id"] = f"week-{number}"
    manifest["started"] = (datetime(2026, 10, 5, 6, tzinfo=UTC) + timedelta(weeks=number)).isoformat()
    if number > STEP_AT:
        manifest["interpreters"]["3.12"]["environment"]["facts"]["version"] = "3.12.2"
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    work = tmp_path_factory.mktemp("weekly")
    found = History(work / "history")
    for number in range(RUNS):
        assert found.add(weekly_run(work, number)).status == "added"
    return found


def test_the_step_is_the_only_change_point_and_says_what_changed(history):
    rows = history.series()
    found, sigma = find_changes(rows)
    expected = {
        (r["workload"], r["executor"], r["workers"], r["interpreter"])
        for r in rows
        if r["interpreter"] == "3.12" and r["workload"] == "crunch" and r["status"] == "ok"
    }
    assert {f.series for f in found} == expected and len(found) == len(expected) > 0
    for f in found:
        assert f.run_id == f"week-{STEP_AT + 1}" and f.before == f"week-{STEP_AT}"
        assert f.runs_after == RUNS - STEP_AT - 1 == 2 and f.provisional
        assert f.point.ratio == pytest.approx(1.15, rel=0.03) and f.point.low < f.point.ratio < f.point.high
        assert "interpreter release: 3.12.1 → 3.12.2" in f.changed
    # on the index page they are one step: one run, one workload, one story
    (step,) = steps_of(found)
    assert (step.run_id, step.workload, len(step.found)) == (f"week-{STEP_AT + 1}", "crunch", len(expected))
    assert step.median_ratio == pytest.approx(1.15, rel=0.03) and step.provisional
    # the noise scale: the 1% a run this history was given, measured from its differences
    # (the crunch groups hold the step in one difference of five)
    scales, overall = noise_scales(series_of(rows))
    assert overall == sigma and 0.006 < sigma < 0.016
    assert all(0.004 < s < 0.025 for s in scales.values())


def test_the_site_lists_the_change_and_links_every_runs_report(history, tmp_path):
    index = build_site(history, tmp_path / "site", log=lambda line: None)
    html = index.read_text()
    assert html.count("week-4</a>") >= 1 and "interpreter release: 3.12.1 → 3.12.2" in html
    assert "No change point" not in html and "provisional" in html
    assert html.count('<details class="step">') == 1
    for number in range(RUNS):
        report = tmp_path / "site" / "runs" / f"week-{number}" / "index.html"
        assert report.exists() and f'href="runs/week-{number}/index.html"' in html
    # a second build reuses the reports of unchanged runs
    stamp = tmp_path / "site" / "runs" / "week-0" / "index.html"
    before = stamp.stat().st_mtime_ns
    build_site(history, tmp_path / "site", log=lambda line: None)
    assert stamp.stat().st_mtime_ns == before
    for page in ("index.html", "history.html"):
        text = (tmp_path / "site" / page).read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing from a network


@pytest.mark.browser
@pytest.mark.integration
def test_the_history_page_draws_offline_and_answers_its_filters(history, tmp_path, browser):
    build_site(history, tmp_path / "site", reports=False, log=lambda line: None)
    page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    requests, problems = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto((tmp_path / "site" / "history.html").as_uri())
    page.wait_for_function("document.body.dataset.rendered === 'yes'", timeout=60_000)
    assert page.locator("#chart svg").count() >= 1 and problems == []
    assert [u for u in requests if not u.startswith("file:")] == []
    selects = page.locator("#chart select")
    assert selects.count() == 3  # workload, execution model, worker count
    rows = [r for r in history.series() if r["status"] == "ok"]
    first = {k: sorted({r[k] for r in rows})[0] for k in ("workload", "executor", "workers")}

    def shown() -> int:
        return page.locator("#chart g.mark-symbol.role-mark path").count()

    def expected(workload: str) -> int:
        keep = {**first, "workload": workload}
        return sum(all(r[k] == v for k, v in keep.items()) for r in rows)

    assert shown() == expected(first["workload"]) > 0
    other = sorted({r["workload"] for r in rows})[-1]
    selects.nth(0).select_option(other)
    page.wait_for_function(
        f"document.querySelectorAll('#chart g.mark-symbol.role-mark path').length == {expected(other)}"
    )
    # the interpreters, as the report's checkboxes: one unticked, its points gone
    boxes = page.locator("input.pick-interpreter")
    assert boxes.count() == len({r["interpreter"] for r in rows})
    dropped = boxes.nth(0).get_attribute("value")
    boxes.nth(0).uncheck()
    left = sum(
        all(r[k] == v for k, v in {**first, "workload": other}.items()) and r["interpreter"] != dropped
        for r in rows
    )
    points = "document.querySelectorAll('#chart g.mark-symbol.role-mark path').length"
    page.wait_for_function(f"{points} == {left}")
    assert problems == []


def site_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gilmatrix.cli", "site", *args], capture_output=True, text=True, timeout=300
    )


def test_the_command_builds_the_site_and_refuses_what_it_cannot(history, tmp_path):
    done = site_cli("--history", str(history.root), "--out", str(tmp_path / "s"), "--no-reports")
    assert done.returncode == 0, done.stderr
    assert "6 runs" in done.stdout and (tmp_path / "s" / "history.html").exists()
    assert not (tmp_path / "s" / "runs").exists()  # --no-reports: no report, no link to one
    assert 'href="runs/' not in (tmp_path / "s" / "index.html").read_text()
    empty = site_cli("--history", str(tmp_path / "nothing"), "--out", str(tmp_path / "e"))
    assert empty.returncode != 0 and "no run in the history" in empty.stderr + empty.stdout
    bad = site_cli("--history", str(history.root), "--fdr", "2")
    assert bad.returncode != 0 and "--fdr 2" in bad.stderr + bad.stdout


def test_digests_are_shown_as_git_shows_commits():
    digest = "8320add96a9958285942cb2bc2d06da4e15d46c1ad7b0eac56aad7e742ed0a6d"
    shown = short(f"matrix file: {digest} → sha256:{digest[::-1]}")
    assert shown == f"matrix file: 8320add96a99 → {digest[::-1][:12]}"
    assert short("interpreter release: 3.12.1 → 3.12.2") == "interpreter release: 3.12.1 → 3.12.2"


@pytest.mark.browser
@pytest.mark.integration
def test_a_change_points_link_opens_the_chart_on_its_series(history, tmp_path, browser):
    build_site(history, tmp_path / "site", reports=False, log=lambda line: None)
    html = (tmp_path / "site" / "index.html").read_text()
    pattern = r'href="(history\.html#workload=crunch&amp;executor=(\w+)&amp;workers=(\d+))"'
    links = list(re.finditer(pattern, html))
    # one that is not what the page shows first (the first of each select, sorted)
    rows = [r for r in history.series() if r["status"] == "ok"]
    first = (sorted({r["executor"] for r in rows})[0], str(sorted({r["workers"] for r in rows})[0]))
    link = next(m for m in links if (m.group(2), m.group(3)) != first)
    page = browser.new_context().new_page()
    page.goto((tmp_path / "site").as_uri() + "/" + link.group(1).replace("&amp;", "&"))
    page.wait_for_function("document.body.dataset.rendered === 'yes'", timeout=60_000)
    selects = page.locator("#chart select")
    picked = [selects.nth(i).evaluate("s => s.options[s.selectedIndex].textContent") for i in range(3)]
    assert picked == ["crunch", link.group(2), link.group(3)]
    shown = sum(
        (r["workload"], r["executor"], str(r["workers"])) == ("crunch", link.group(2), link.group(3))
        for r in rows
    )
    assert page.locator("#chart g.mark-symbol.role-mark path").count() == shown > 0


def test_the_vega_bundle_is_written_once_per_version(tmp_path):
    from gilmatrix.history.site import _bundle_file

    made = []

    def make() -> str:
        made.append(1)
        return "/* vega */"

    versions = {"vega": "6.2.0", "vegalite": "6.4", "embed": "7.0.2"}
    assert _bundle_file(tmp_path, make, versions) == "vega.js" and len(made) == 1
    assert _bundle_file(tmp_path, make, versions) == "vega.js" and len(made) == 1  # kept
    assert _bundle_file(tmp_path, make, {**versions, "vega": "6.3.0"}) and len(made) == 2  # another
    assert (tmp_path / "vega.js").read_text().endswith("/* vega */")
