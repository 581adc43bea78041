"""The built book, opened in a real browser (headless Chromium through its Debian chromedriver).

These tests read ``_build/html``, so they run after the book is built: ``make test``
runs the suite, builds the smoke book, then runs this file (``pytest -m browser``).
Each page is loaded, MathJax is given time to typeset, and then:

- every image on the page has loaded (``naturalWidth > 0``) and each experiment
  page shows at least one figure;
- every math element of the page has been typeset by MathJax (no raw TeX such
  as ``\\(\\hat G\\)`` left in the text a reader sees);
- the summary page's glued numbers were pasted (no missing-glue placeholders).

A full-page screenshot of each page is kept under ``_build/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from green_profiles.runs import experiments

pytestmark = pytest.mark.browser

BUILD = Path("_build/html")
SCREENSHOTS = Path("_build/screenshots")
# Every experiment of the registry (the table of contents lists them in its order: tests/test_book.py).
EXPERIMENTS = tuple(experiments.EXPERIMENTS)
PAGES = ("book/intro", "book/methods", *(f"book/experiments/{name}" for name in EXPERIMENTS),
         "book/summary", "book/reproducibility")
WINDOW_WIDTH, WINDOW_HEIGHT = 1280, 1000
PAGES_WITH_MATH = ("book/intro", "book/methods", "book/experiments/coherent_text", "book/summary")

# Run in the page once MathJax has finished: what a reader would see.
_INSPECT = """
const images = Array.from(document.querySelectorAll('article img'));
const math = Array.from(document.querySelectorAll('.math'));
return {
  images: images.length,
  broken: images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src),
  math: math.length,
  typeset: document.querySelectorAll('mjx-container').length,
  raw_tex: math.filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.slice(0, 60)),
  text: document.querySelector('article') ? document.querySelector('article').innerText : '',
  pasted: document.querySelectorAll('article .pasted-text').length,
  pasted_unlike_text: Array.from(document.querySelectorAll('article .pasted-text'))
    .filter(el => getComputedStyle(el).fontWeight !== getComputedStyle(el.parentElement).fontWeight
                  || getComputedStyle(el).fontFamily !== getComputedStyle(el.parentElement).fontFamily)
    .map(el => el.textContent),
  code_in_cells: Array.from(document.querySelectorAll('article td code, article li code'))
    .map(el => el.textContent).filter(text => /[0-9]/.test(text)),
};
"""
# Selenium's get() can return while the document is still loading (seen in CI: readyState "loading", 3 of the
# page's scripts parsed), and MathJax, a deferred script, starts only after that: wait for the whole page, then
# for MathJax's startup (up to 20 s in all) before calling it absent.
_MATHJAX_DONE = """
const done = arguments[arguments.length - 1];
const started = Date.now();
(function wait() {
  const late = Date.now() - started > 20000;
  if (document.readyState !== 'complete') {
    if (late) { done('page still ' + document.readyState); } else { setTimeout(wait, 100); }
  } else if (!document.querySelector('script[src*="mathjax"]')) {
    done('no MathJax');
  } else if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done('ok')).catch(error => done('failed: ' + error));
  } else if (late) {
    done('no MathJax');
  } else {
    setTimeout(wait, 100);
  }
})();
"""


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        message = "needs Debian's chromium and chromium-driver (make test installs them: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if not (BUILD / "book/intro.html").is_file():
        pytest.fail(f"no built book in {BUILD}: run `make book SETTINGS=smoke` first (make test does)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for drivers online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                 f"--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(30)
    driver.set_page_load_timeout(60)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def open_page(browser):
    """Load a page once (its checks' report and screenshot are reused by every test that reads it)."""
    reports: dict[str, dict] = {}

    def open_(page: str) -> dict:
        if page not in reports:
            _load(browser, page)
            state = browser.execute_async_script(_MATHJAX_DONE)
            reports[page] = browser.execute_script(_INSPECT) | {"mathjax": state}
            _screenshot(browser, SCREENSHOTS / f"{Path(page).name}.png")
        return reports[page]

    return open_


def _load(driver, page: str) -> None:
    """Open a built page and wait until its whole document is parsed and loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get((BUILD / f"{page}.html").resolve().as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _screenshot(driver, path: Path) -> None:
    """The whole page: the window is made as tall as the page (up to 16,000 px), then captured."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WINDOW_WIDTH, min(int(height) + 120, 16_000))
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(WINDOW_WIDTH, WINDOW_HEIGHT)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_figures_and_math(open_page, page):
    report = open_page(page)
    assert report["broken"] == [], f"{page}: images that did not load: {report['broken']}"
    if page.startswith("book/experiments/"):
        assert report["images"] >= 1, f"{page} shows no figure"
    if report["math"]:
        assert report["mathjax"] == "ok", f"{page}: MathJax did not run ({report['mathjax']})"
        assert report["raw_tex"] == [], f"{page}: math left as raw TeX: {report['raw_tex'][:5]}"
        assert report["typeset"] >= report["math"]
    if page in PAGES_WITH_MATH:
        assert report["math"] >= 1, f"{page} should contain equations"
    for raw in ("\\hat", "\\frac", "$$"):
        assert raw not in report["text"], f"{page}: raw TeX {raw!r} visible in the page text"
    assert (SCREENSHOTS / f"{Path(page).name}.png").stat().st_size > 10_000



# The interactive figures (green_profiles.report.interactive): plotly.js from the book's own _static/, no network.
INTERACTIVE_PAGES = ("book/experiments/model_sweep", "book/experiments/depth", "book/experiments/training_dynamics",
                     "book/experiments/robustness")
_PLOTS_DRAWN = """
const divs = Array.from(document.querySelectorAll('article .plotly-graph-div'));
return divs.length > 0 && divs.every(div => div.classList.contains('js-plotly-plot')
                                            && div.querySelector('.plot-container svg.main-svg .scatterlayer .trace'));
"""
_PLOTS = """
const divs = Array.from(document.querySelectorAll('article .plotly-graph-div'));
const gd = divs[0];
Plotly.Fx.hover(gd, [{curveNumber: gd.data.findIndex(trace => trace.showlegend !== false), pointNumber: 0}]);
const external = url => /^(https?:)?[/][/]/.test(url);
return {
  traces: divs.map(div => div.querySelectorAll('.scatterlayer .trace').length),
  legend: divs.map(div => div.querySelectorAll('.legend .traces').length),
  hover: Array.from(gd.querySelectorAll('.hoverlayer .hovertext')).map(el => el.textContent).join(' '),
  scripts: Array.from(document.scripts).map(script => script.src).filter(src => src.includes('plotly')),
  external: [...Array.from(document.querySelectorAll('script[src], img[src], iframe[src]')).map(el => el.src),
             ...Array.from(document.querySelectorAll('link[href]:not([rel=canonical])')).map(el => el.href),
             ...performance.getEntriesByType('resource').map(entry => entry.name)].filter(external),
};
"""
_HIDDEN = ("return document.querySelector('article .plotly-graph-div').data"
           ".filter(trace => trace.visible === 'legendonly').length")


@pytest.mark.parametrize("page", INTERACTIVE_PAGES)
def test_interactive_figures_render_offline(browser, page):
    from selenium.webdriver.support.ui import WebDriverWait

    offline = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", offline)
    try:
        browser.get((BUILD / f"{page}.html").resolve().as_uri())
        WebDriverWait(browser, 20).until(lambda driver: driver.execute_script(_PLOTS_DRAWN))
        report = browser.execute_script(_PLOTS)
        toggle = browser.find_element("css selector", "article .plotly-graph-div .legend .traces .legendtoggle")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", toggle)
        toggle.click()  # plotly waits out its double-click delay (300 ms) before hiding the group
        WebDriverWait(browser, 5).until(lambda driver: driver.execute_script(_HIDDEN) > 0)
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", offline | {"offline": False})
    assert all(count >= 1 for count in report["traces"]) and all(count >= 1 for count in report["legend"]), report
    assert report["legend"][0] >= 2, report  # the first figure has conditions to toggle
    # The first point's hover: a profile's distance and interval, the depth page's first layer, or the robustness
    # page's first specification with its paired difference from the paper's protocol.
    assert "r = 1 tokens" in report["hover"] and "95% interval" in report["hover"] or \
        "block 0 input" in report["hover"] or \
        "minus the paper's protocol" in report["hover"] and "paired" in report["hover"], report["hover"]
    # One copy of plotly.js, the book's own; nothing on the page points outside the built book.
    assert [src.rsplit("/", 1)[-1].split("?")[0] for src in report["scripts"]] == ["plotly.min.js"]  # ?v=checksum
    assert report["scripts"][0].startswith("file://") and report["external"] == [], report["external"]


def test_summary_pastes_the_measured_numbers(open_page):
    report = open_page("book/summary")
    text = report["text"]
    # Every glued cell holds a value with its bootstrap interval, e.g. "0.83 [0.71, 0.95]".
    assert text.count("[") >= 10, "the summary's tables of exponents are empty"
    for placeholder in ("glue", "undefined"):
        assert placeholder not in text, f"summary shows {placeholder!r}"
    # Pasted as ordinary text, not as inline code (monospace): no number sits in a code element of a table.
    assert report["pasted"] >= 80, f"only {report['pasted']} pasted values on the summary page"
    assert report["code_in_cells"] == [], f"numbers rendered as code: {report['code_in_cells'][:5]}"
    assert report["pasted_unlike_text"] == [], f"pasted values styled apart: {report['pasted_unlike_text'][:5]}"


def test_intro_opens_with_this_builds_findings_linked_to_their_evidence(open_page, browser):
    report = open_page("book/intro")
    _load(browser, "book/intro")  # open_page caches its report: the browser may show another page by now
    findings = browser.find_elements("css selector", "#this-build-in-four-findings ol > li")
    assert len(findings) == 4
    for item in findings:
        assert item.find_elements("css selector", "a[href*='experiments/']"), item.text
        assert item.find_elements("css selector", ".pasted-text"), item.text
    assert report["text"].index("This build in four findings") < report["text"].index("The question")
    assert report["code_in_cells"] == []


_SHADING = """
const block = document.querySelector('article .green-shading');
if (!block) { return null; }
const shaded = Array.from(block.querySelectorAll('span[data-g]'));
return {
  html: block.outerHTML,
  spans: shaded.length,
  panels: block.querySelectorAll('div[style*="flex: 1 1 0"]').length,
  inline: shaded.filter(span => span.style.backgroundColor !== '').length,
  painted: shaded.filter(span => !['', 'transparent', 'rgba(0, 0, 0, 0)'].includes(getComputedStyle(span).backgroundColor)).length,
  values: shaded.filter(span => Number.isFinite(parseFloat(span.dataset.g))).length,
};
"""


def test_coherent_text_shades_a_real_sentence(open_page, browser):
    open_page("book/experiments/coherent_text")
    _load(browser, "book/experiments/coherent_text")  # open_page caches its report: load the page again
    report = browser.execute_script(_SHADING)
    assert report is not None, "the coherent_text page shows no shaded text (.green-shading)"
    assert report["panels"] == 3, "expected trained, random init and shuffled side by side"
    assert report["spans"] > 0 and report["inline"] == report["spans"] == report["painted"] == report["values"]
    # Self-contained: inline styles, nothing fetched and nothing run.
    for needle in ("http:", "https:", "<script", "<link", "<img", "url("):
        assert needle not in report["html"], f"the shaded text refers to {needle!r}"
