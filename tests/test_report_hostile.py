"""Hostile strings in a result folder written by someone else, in a real browser.

A run folder (devtools/synthetic.py, then its manifest and pyperf JSON edited) whose workload
names, descriptions, interpreter labels, run id, reasons, output and pyperf metadata hold markup,
script, `</script>` and `<!--` (for the JSON the page embeds for Vega), `javascript:` URLs, a
100,000-character string and control characters. The report is built from it with the real
command, opened in Debian's chromium (as tests/test_report_browser.py does), and must execute
nothing (every payload would set ``window.__pwned``, change ``document.title`` or open a
dialog), show the strings as text and still render: headings, tables, every chart.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from devtools.synthetic import SyntheticRun, write_run
from tests.conftest import gilmatrix

pytestmark = [pytest.mark.browser, pytest.mark.integration]


PWN = "window.__pwned=1;document.title='pwned'"
SCRIPT = f"<script>{PWN}</script>"
IMG = f'"><img src=x onerror="{PWN}">'
CLOSE = f"</script><script>{PWN}</script><!--"
JS_URL = f"javascript:{PWN}"
ATTR = f"' onmouseover='{PWN}' x='"
SVG = f'<svg onload="{PWN}"></svg>'
CONTROL = "ctl\x01\x08\x0b\x1b[31m\u2028\u2029\x7f\ufeffend"
LONG = "L" * 100_000
# Workload ids: ordinary text from a result file's point of view ('/' is allowed before the
# executor/workers part of a cell id).
WORKLOAD = f"evil{IMG}{CLOSE}"
WORKLOAD2 = f"x{SCRIPT}{ATTR}{CONTROL}"
# an interpreter id as a manifest written by someone else may spell it (its results file
# keeps its name: reading files is not what is tested here)
INTERPRETER = f"3.12{IMG}{CONTROL}"


def hostile_run(run_dir: Path) -> Path:
    spec = SyntheticRun(
        interpreters=("3.12", "3.13t"),
        workloads=("crunch", WORKLOAD, WORKLOAD2),
        workload_kinds={WORKLOAD: "cpu", WORKLOAD2: "io"},
        executors=("sequential", "threads", "processes"),
        workers=(1, 2),
        run_id=f"run{SCRIPT}",
        cell_failures={
            ("3.12", "crunch/threads/2"): ("failed", f"reason {IMG}{JS_URL}", f"tail {CLOSE}{CONTROL}"),
            ("3.13t", "crunch/processes/2"): ("timeout", f"why {SVG}", LONG),
        },
    )
    write_run(run_dir, spec)
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["workloads"][WORKLOAD] = {
        "description": f"d {SCRIPT}{CLOSE}",
        "kind": "cpu",
        "implementation": JS_URL,
    }
    manifest["workloads"][WORKLOAD2] = {"description": LONG + ATTR, "kind": "io", "implementation": "x"}
    manifest["workloads"]["crunch"]["description"] = f"crunch {IMG}"
    manifest["warnings"] = [f"warning {SCRIPT}", f"{JS_URL}", CONTROL]
    manifest["matrix"]["path"] = f"matrix{IMG}.yaml"
    manifest["matrix"]["profile"] = f"p{ATTR}"
    manifest["state"] = f"partial{SVG}"
    manifest["host"]["hostname"] = f"host{CLOSE}"
    manifest["host"]["cpu_model"] = LONG
    manifest["backend"] = {"name": f"docker{IMG}"}
    for entry in manifest["interpreters"].values():
        env = entry["environment"]
        env["image"] = f"img{SCRIPT}"
        env["python"] = JS_URL
        env["facts"]["sys_version"] = f"3.x {CLOSE}"
        env["facts"]["config_args"] = f"'--with-{IMG}' {CONTROL}"
        env["facts"]["executable"] = JS_URL
    manifest["interpreters"] = {
        (INTERPRETER if k == "3.12" else k): v for k, v in manifest["interpreters"].items()
    }
    for cell in manifest["cells"]:
        if cell["interpreter"] == "3.12":
            cell["interpreter"] = INTERPRETER
    manifest_path.write_text(json.dumps(manifest, indent=2))
    for suite in run_dir.glob("3.*.json"):
        text = suite.read_text()
        for plain, hostile in (
            ("synthetic-host", f"h{SCRIPT}"),
            ("Synthetic CPU @ 3.0GHz", f"cpu{IMG}{CONTROL}"),
            ("forkserver", f"fork{CLOSE}"),
            ("Linux-6.1.0-synthetic-x86_64-with-glibc2.36", JS_URL),
        ):
            text = text.replace(json.dumps(plain), json.dumps(hostile))
        suite.write_text(text)
    return run_dir


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = hostile_run(tmp_path_factory.mktemp("run") / "hostile")
    out = tmp_path_factory.mktemp("out")
    built = gilmatrix("report", str(run), "--out", str(out))
    assert built.returncode == 0, built.stderr
    assert "Traceback" not in built.stderr
    return out / "report"


def test_hostile_strings_execute_nothing_and_the_page_renders(browser, report: Path) -> None:
    context = browser.new_context(viewport={"width": 1320, "height": 900})
    page = context.new_page()
    dialogs, errors, requests = [], [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto((report / "index.html").as_uri())  # waits for the load event
    assert page.evaluate("window.__pwned") is None
    page.wait_for_function("document.body.dataset.chartsDone === '1'", timeout=60_000)
    # hover and click everything a payload could hang on, then look for its traces
    for selector in ("h2", "td", "option", "th", "p.warning", "summary"):
        for element in page.locator(selector).all()[:200]:
            element.dispatch_event("mouseover")
    page.locator("summary").first.click()
    # a chart's tooltip (vega-tooltip writes HTML) over a point of the hostile interpreter
    figure = page.locator("div.chart[data-chart^='time-w1-']")
    figure.scroll_into_view_if_needed()
    marks = figure.locator("g.mark-symbol path")
    tip = "document.getElementById('vg-tooltip-element')"
    shown = ""
    for i in range(marks.count()):
        marks.nth(i).hover(force=True)
        shown = page.evaluate(f"{tip} ? {tip}.textContent : ''")
        if '3.12"><img' in shown:
            break
    assert '3.12"><img src=x onerror=' in shown  # the label as text
    assert page.evaluate(f"{tip}.querySelectorAll('img, script, svg').length") == 0

    assert page.evaluate("window.__pwned") is None
    assert page.title() == f"gilmatrix report: run{SCRIPT}"  # the text, not 'pwned'
    assert dialogs == [] and errors == []
    assert [u for u in requests if not u.startswith("file:")] == []
    # no markup came from the data: no image, no foreign script, no handler, no script link
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 3  # payload JSON, the Vega bundle, the page's
    handlers = page.evaluate(
        "Array.from(document.querySelectorAll('*')).flatMap(el => Array.from(el.attributes)"
        ".filter(a => a.name.startsWith('on')).map(a => el.tagName + ' ' + a.name))"
    )
    assert handlers == []
    assert page.locator("a[href^='javascript:' i]").count() == 0

    # it still renders, the strings as text
    assert page.locator("h1").count() == 1
    assert page.locator("h1").inner_text().startswith("gilmatrix")
    headings = page.locator("h2").all_inner_texts()
    assert "Winners" in headings and "Across versions" in headings
    sections = page.locator("section.workload h2")
    assert sections.count() == 3
    names = [sections.nth(i).evaluate("e => e.firstChild.textContent.trim()") for i in range(3)]
    assert sorted(names) == sorted(["crunch", WORKLOAD, WORKLOAD2])
    assert page.locator("table.overview tbody tr").count() == 3
    assert page.locator("table.numbers").count() == 3
    charts = page.locator("div.chart").count()
    assert charts >= 6
    assert page.locator("div.chart[data-rendered='1']").count() == charts
    assert page.locator("div.chart svg.marks, div.chart canvas.marks").count() == charts
    assert page.locator("#problems tbody tr").count() >= 2
    problems = page.locator("#problems").inner_text()
    assert f"reason {IMG}{JS_URL}" in problems
    header = page.locator("table.overview thead th").all_text_contents()
    assert INTERPRETER in header

    # the filters still work with such labels: unticking the interpreter hides its cards
    boxes = page.locator("input.pick-interpreter")
    values = [boxes.nth(i).evaluate("b => b.value") for i in range(boxes.count())]
    assert sorted(values) == sorted(["3.13t", INTERPRETER])
    boxes.nth(values.index(INTERPRETER)).uncheck()
    hidden = page.evaluate(
        "v => Array.from(document.querySelectorAll('article.card'))"
        ".filter(c => c.dataset.interpreter === v).map(c => c.classList.contains('hidden'))",
        INTERPRETER,
    )
    assert hidden and all(hidden)
    # and the charts keep the other one when 3.13t goes too (their data holds its label as
    # the charts show it, see charts.vega_text): unticking 3.13t and ticking it back
    boxes.nth(values.index(INTERPRETER)).check()
    boxes.nth(values.index("3.13t")).uncheck()
    texts = "Array.from(document.querySelectorAll('div.chart svg text')).map(t => t.textContent)"
    page.wait_for_function(f"!{texts}.includes('3.13t')", timeout=30_000)
    assert any(t.startswith('3.12"><img') for t in page.evaluate(texts))
    assert page.evaluate("window.__pwned") is None and errors == []
    context.close()


def test_chart_images_hold_no_markup(report: Path) -> None:
    """The SVG copies of the charts (vl-convert) hold the strings as text: no script, no
    handler attribute, no foreign element; each parses as XML."""
    svgs = sorted((report / "charts").glob("*.svg"))
    assert svgs
    for path in svgs:
        root = ET.parse(path).getroot()
        for element in root.iter():
            tag = element.tag.rsplit("}", 1)[-1]
            assert tag not in ("script", "foreignObject", "iframe", "image"), (path, tag)
            assert not [a for a in element.attrib if a.lower().startswith("on")], (path, element.attrib)
            for name, value in element.attrib.items():
                assert not re.match(r"\s*javascript:", value, re.I), (path, name, value)


def test_embedded_json_cannot_close_its_script(report: Path) -> None:
    """The chart payload embedded in the page holds no '</' nor '<!--' (which would end or
    change its <script> element), and it decodes back to the hostile strings."""
    html = (report / "index.html").read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="gm-payload">(.*?)</script>', html, re.S)
    assert match
    body = match.group(1)
    assert "</" not in body and "<!--" not in body and "<script" not in body.lower()
    payload = json.loads(body)
    assert WORKLOAD in payload["datasets"]["cells"]["categories"]["workload"]
